//! Everything one owner has, across tables: the purge path.

use async_trait::async_trait;

use super::StoreError;

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub conversations: u64,
    pub messages: u64,
    pub files: u64,
    pub api_keys: u64,
}

#[async_trait]
pub trait OwnerStore: Send + Sync {
    /// Deletes everything an owner has: the only path allowed to delete messages.
    async fn purge_owner(&self, owner: &str) -> Result<PurgeReport, StoreError>;
}
