//! Idempotency keys of `/v1/chat/send`: claim, answer, release. On Postgres.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::PostgresStore;
use crate::store::{IdempotencyClaim, IdempotencyStore, StoreError};

#[async_trait]
impl IdempotencyStore for PostgresStore {
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
            "DELETE FROM idempotency_keys WHERE owner = $1 AND key = $2 \
             AND (created_at < $3 OR (response IS NULL AND created_at < $4))",
        )
        .bind(owner)
        .bind(key)
        .bind(not_before)
        .bind(pending_before)
        .execute(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (owner, key, body_hash, response, created_at) VALUES ($1, $2, $3, NULL, $4) \
             ON CONFLICT (owner, key) DO NOTHING",
        )
        .bind(owner)
        .bind(key)
        .bind(body_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let existing = if inserted == 1 {
            None
        } else {
            sqlx::query(
                "SELECT body_hash, response FROM idempotency_keys WHERE owner = $1 AND key = $2",
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
        sqlx::query("UPDATE idempotency_keys SET response = $3 WHERE owner = $1 AND key = $2")
            .bind(owner)
            .bind(key)
            .bind(response)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, owner: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE owner = $1 AND key = $2 AND response IS NULL",
        )
        .bind(owner)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
