//! Background upkeep: job leases, archiving, purging soft-deleted conversations. On SQLite.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{SqliteStore, ts};
use crate::store::{MaintenanceStore, PurgedConversations, StoreError};

/// The batch a purge works on; evaluated again by each statement of its transaction, which
/// holds SQLite's write lock throughout, so every statement sees the same rows.
macro_rules! doomed {
    () => {
        "SELECT id FROM conversations WHERE deleted_at < ?1 ORDER BY deleted_at, id LIMIT ?2"
    };
}

#[async_trait]
impl MaintenanceStore for SqliteStore {
    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let taken: Option<String> = sqlx::query_scalar(
            "INSERT INTO job_leases (name, holder, expires_at) VALUES (?1, ?2, ?4) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE job_leases.expires_at <= ?3 OR job_leases.holder = excluded.holder \
             RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(ts(now)?)
        .bind(ts(until)?)
        .fetch_optional(&self.pool)
        .await?;
        Ok(taken.is_some())
    }

    async fn archive_inactive(
        &self,
        inactive_before: OffsetDateTime,
        now: OffsetDateTime,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE conversations SET archived_at = ?2 WHERE id IN ( \
                SELECT id FROM conversations \
                WHERE archived_at IS NULL AND deleted_at IS NULL AND updated_at < ?1 \
                LIMIT ?3)",
        )
        .bind(ts(inactive_before)?)
        .bind(ts(now)?)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn purge_deleted(
        &self,
        deleted_before: OffsetDateTime,
        limit: i64,
    ) -> Result<PurgedConversations, StoreError> {
        let before = ts(deleted_before)?;
        let mut tx = self.pool.begin().await?;
        // The gate comes first: its INSERT takes the write lock for the whole batch.
        sqlx::query("INSERT INTO purge_gate (opened_by) VALUES ('retention')")
            .execute(&mut *tx)
            .await?;
        sqlx::query(concat!(
            "DELETE FROM messages_fts WHERE message_id IN ",
            "(SELECT id FROM messages WHERE conversation_id IN (",
            doomed!(),
            "))"
        ))
        .bind(&before)
        .bind(limit)
        .execute(&mut *tx)
        .await?;
        let messages = sqlx::query(concat!(
            "DELETE FROM messages WHERE conversation_id IN (",
            doomed!(),
            ")"
        ))
        .bind(&before)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let conversations = sqlx::query(concat!(
            "DELETE FROM conversations WHERE id IN (",
            doomed!(),
            ")"
        ))
        .bind(&before)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM purge_gate")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(PurgedConversations {
            conversations,
            messages,
        })
    }
}
