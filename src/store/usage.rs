//! Usage rows: one per provider call, written in batches.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::UsageRecord;

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Writes usage rows in one statement (the batched writer's flush).
    async fn insert_usage(&self, rows: &[UsageRecord]) -> Result<(), StoreError>;

    /// A user's usage rows, newest first.
    async fn list_usage(&self, user_hash: &str, limit: i64)
    -> Result<Vec<UsageRecord>, StoreError>;
}
