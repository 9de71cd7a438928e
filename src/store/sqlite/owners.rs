//! Everything one owner has, across tables: the purge path. On SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::{OwnerStore, PurgeReport, StoreError};

#[async_trait]
impl OwnerStore for SqliteStore {
    async fn purge_owner(&self, owner: &str) -> Result<PurgeReport, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Opens the append-only trigger's gate; the row is removed before commit, and a
        // failure rolls it back with everything else.
        sqlx::query("INSERT INTO purge_gate (opened_by) VALUES (?)")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        // The search index's copy of the text goes too (it is not tied to rows by a trigger:
        // the lookup by message id is a scan, done once here rather than once per row).
        sqlx::query(
            "DELETE FROM messages_fts WHERE message_id IN (SELECT m.id FROM messages m \
             JOIN conversations c ON c.id = m.conversation_id WHERE c.owner = ?)",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        let messages = sqlx::query(
            "DELETE FROM messages WHERE conversation_id IN (SELECT id FROM conversations WHERE owner = ?)",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let conversations = sqlx::query("DELETE FROM conversations WHERE owner = ?")
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let files = sqlx::query("DELETE FROM files WHERE owner = ?")
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let api_keys = sqlx::query("DELETE FROM api_keys WHERE owner = ?")
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM purge_gate")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(PurgeReport {
            conversations,
            messages,
            files,
            api_keys,
        })
    }
}
