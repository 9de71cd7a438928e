//! Monthly spend caps set per user, and what a user has spent in a period.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;

/// A cap an admin set for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetOverride {
    pub user_id: String,
    /// None: this user has no cap, whatever the default.
    pub monthly_nano_usd: Option<i64>,
    pub updated_by: String,
    pub updated_at: OffsetDateTime,
}

#[async_trait]
pub trait BudgetStore: Send + Sync {
    /// The cap set for `user_id`, if one was.
    async fn get_budget(&self, user_id: &str) -> Result<Option<BudgetOverride>, StoreError>;

    /// Sets (or replaces) the cap of `budget.user_id`.
    async fn put_budget(&self, budget: &BudgetOverride) -> Result<(), StoreError>;

    /// Removes the cap set for `user_id`; false when there was none.
    async fn delete_budget(&self, user_id: &str) -> Result<bool, StoreError>;

    /// The cost of the calls filed under any of `user_hashes` in `[from, to)`, in nano-USD:
    /// the record a budget ledger starts from.
    async fn spent_between(
        &self,
        user_hashes: &[String],
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<i64, StoreError>;
}
