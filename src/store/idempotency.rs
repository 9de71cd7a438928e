//! Idempotency keys of `/v1/chat/send`: claim, answer, release.

use async_trait::async_trait;
use time::OffsetDateTime;

use sqlx::Row;

use super::StoreError;

/// What claiming an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key is ours now: run the request.
    Claimed,
    /// The key was used within its lifetime: its body hash, and its stored answer (None
    /// while the first request still runs).
    Existing {
        body_hash: String,
        response: Option<String>,
    },
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for `owner` unless a claim newer than `not_before` exists (older ones are
    /// replaced, and so are unanswered ones older than `pending_before`: their request died).
    async fn claim_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        body_hash: &str,
        now: OffsetDateTime,
        not_before: OffsetDateTime,
        pending_before: OffsetDateTime,
    ) -> Result<IdempotencyClaim, StoreError>;

    /// Stores the answer of a claimed key.
    async fn complete_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        response: &str,
    ) -> Result<(), StoreError>;

    /// Gives a claimed key back (its request failed), so it can be retried.
    async fn release_idempotency_key(&self, owner: &str, key: &str) -> Result<(), StoreError>;
}

pub(super) fn claim_from<R: Row>(row: Option<R>) -> Result<IdempotencyClaim, StoreError>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    match row {
        None => Ok(IdempotencyClaim::Claimed),
        Some(row) => Ok(IdempotencyClaim::Existing {
            body_hash: row.try_get("body_hash")?,
            response: row.try_get("response")?,
        }),
    }
}
