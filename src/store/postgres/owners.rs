//! Everything one owner has, across tables: the purge path. On Postgres.

use async_trait::async_trait;

use super::PostgresStore;
use crate::store::{OwnerStore, PurgeReport, StoreError};

#[async_trait]
impl OwnerStore for PostgresStore {
    async fn purge_owner(&self, owner: &str) -> Result<PurgeReport, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Opens the append-only trigger's purge path for this transaction only.
        sqlx::query("SELECT set_config('colloquy.purge', 'on', true)")
            .execute(&mut *tx)
            .await?;
        let messages = sqlx::query(
            "DELETE FROM messages WHERE conversation_id IN (SELECT id FROM conversations WHERE owner = $1)",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let conversations = sqlx::query("DELETE FROM conversations WHERE owner = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let files = sqlx::query("DELETE FROM files WHERE owner = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let api_keys = sqlx::query("DELETE FROM api_keys WHERE owner = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(PurgeReport {
            conversations,
            messages,
            files,
            api_keys,
        })
    }
}
