//! Usage rows: one per provider call, written in batches.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;
use crate::domain::UsageRecord;

/// What usage is summed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    /// The UTC day, `YYYY-MM-DD`.
    Day,
    Model,
    Specialist,
}

/// Whose usage: one user's (under any of their hashes) or everyone's.
#[derive(Debug, Clone, Copy)]
pub enum UsageOf<'a> {
    /// At most two hashes (a user's email hash and user-id hash).
    User(&'a [String]),
    Everyone,
}

/// The sums of one group: every figure is a plain sum over `usage_logs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageBucket {
    /// The day, model or specialist id; None for calls with no specialist (titles).
    pub key: Option<String>,
    pub requests: i64,
    pub succeeded: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub cost_nano_usd: i64,
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Writes usage rows in one statement (the batched writer's flush).
    async fn insert_usage(&self, rows: &[UsageRecord]) -> Result<(), StoreError>;

    /// Usage in `[from, to)`, summed by `group`, in key order.
    async fn usage_summary(
        &self,
        of: UsageOf<'_>,
        from: OffsetDateTime,
        to: OffsetDateTime,
        group: UsageGroup,
    ) -> Result<Vec<UsageBucket>, StoreError>;

    /// A user's usage rows, newest first.
    async fn list_usage(&self, user_hash: &str, limit: i64)
    -> Result<Vec<UsageRecord>, StoreError>;
}
