//! Background upkeep: job leases, archiving inactive conversations, and purging soft-deleted
//! ones for good.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::StoreError;

/// What one purge batch removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgedConversations {
    pub conversations: u64,
    pub messages: u64,
}

#[async_trait]
pub trait MaintenanceStore: Send + Sync {
    /// Takes (or renews) lease `name` for `holder` until `until`, unless another holder's
    /// lease is still good at `now`. True when `holder` holds it now.
    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Archives up to `limit` live, unarchived conversations with no activity since
    /// `inactive_before`; returns how many.
    async fn archive_inactive(
        &self,
        inactive_before: OffsetDateTime,
        now: OffsetDateTime,
        limit: i64,
    ) -> Result<u64, StoreError>;

    /// Deletes for good up to `limit` conversations soft-deleted before `deleted_before`, and
    /// their messages, through the purge path.
    async fn purge_deleted(
        &self,
        deleted_before: OffsetDateTime,
        limit: i64,
    ) -> Result<PurgedConversations, StoreError>;
}
