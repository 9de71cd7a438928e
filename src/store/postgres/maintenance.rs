//! Background upkeep: job leases, archiving, purging soft-deleted conversations. On Postgres.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::PostgresStore;
use crate::store::{MaintenanceStore, PurgedConversations, StoreError};

#[async_trait]
impl MaintenanceStore for PostgresStore {
    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        // A concurrent taker waits on the row the first one inserts, then sees its
        // unexpired lease in the WHERE and gets no row back.
        let taken: Option<String> = sqlx::query_scalar(
            "INSERT INTO job_leases (name, holder, expires_at) VALUES ($1, $2, $4) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE job_leases.expires_at <= $3 OR job_leases.holder = excluded.holder \
             RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .bind(until)
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
            "UPDATE conversations SET archived_at = $2 WHERE id IN ( \
                SELECT id FROM conversations \
                WHERE archived_at IS NULL AND deleted_at IS NULL AND updated_at < $1 \
                LIMIT $3)",
        )
        .bind(inactive_before)
        .bind(now)
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
        let mut tx = self.pool.begin().await?;
        let doomed: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM conversations WHERE deleted_at < $1 \
             ORDER BY deleted_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(deleted_before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if doomed.is_empty() {
            return Ok(PurgedConversations::default());
        }
        // The append-only trigger's purge path, for this transaction only.
        sqlx::query("SELECT set_config('colloquy.purge', 'on', true)")
            .execute(&mut *tx)
            .await?;
        let messages = sqlx::query("DELETE FROM messages WHERE conversation_id = ANY($1)")
            .bind(&doomed)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let conversations = sqlx::query("DELETE FROM conversations WHERE id = ANY($1)")
            .bind(&doomed)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(PurgedConversations {
            conversations,
            messages,
        })
    }
}
