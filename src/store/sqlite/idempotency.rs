//! Idempotency keys of `/v1/chat/send`: claim, answer, release. On SQLite.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::SqliteStore;
use super::ts;
use crate::store::{IdempotencyClaim, IdempotencyStore, StoreError};

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        body_hash: &str,
        now: OffsetDateTime,
        not_before: OffsetDateTime,
        pending_before: OffsetDateTime,
    ) -> Result<IdempotencyClaim, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE owner = ? AND key = ? \
             AND (created_at < ? OR (response IS NULL AND created_at < ?))",
        )
        .bind(owner)
        .bind(key)
        .bind(ts(not_before)?)
        .bind(ts(pending_before)?)
        .execute(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (owner, key, body_hash, response, created_at) VALUES (?, ?, ?, NULL, ?) \
             ON CONFLICT (owner, key) DO NOTHING",
        )
        .bind(owner)
        .bind(key)
        .bind(body_hash)
        .bind(ts(now)?)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let existing = if inserted == 1 {
            None
        } else {
            sqlx::query(
                "SELECT body_hash, response FROM idempotency_keys WHERE owner = ? AND key = ?",
            )
            .bind(owner)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?
        };
        tx.commit().await?;
        crate::store::idempotency::claim_from(existing)
    }

    async fn complete_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        response: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE idempotency_keys SET response = ? WHERE owner = ? AND key = ?")
            .bind(response)
            .bind(owner)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, owner: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE owner = ? AND key = ? AND response IS NULL",
        )
        .bind(owner)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
