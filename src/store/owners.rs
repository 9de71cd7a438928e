//! Everything one owner has, across tables: read in pages for export, and the purge path.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::domain::{Conversation, Message, StoredFile, UsageRecord};

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PurgeReport {
    pub conversations: u64,
    pub messages: u64,
    pub files: u64,
    pub api_keys: u64,
    pub usage_logs: u64,
    pub idempotency_keys: u64,
    /// A monthly spend cap set for the user.
    pub budgets: u64,
}

#[async_trait]
pub trait OwnerStore: Send + Sync {
    /// All of an owner's conversations, soft-deleted ones included, by id, after `after`.
    async fn owner_conversations(
        &self,
        owner: &str,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Conversation>, StoreError>;

    /// A conversation's messages in order, after `seq` (soft-deleted conversations too).
    async fn messages_after(
        &self,
        conversation_id: Uuid,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Message>, StoreError>;

    /// All of an owner's file records, deleted ones included, by id, after `after`.
    async fn owner_files(
        &self,
        owner: &str,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<StoredFile>, StoreError>;

    /// A user's usage rows, oldest first, after the keyset `(created_at, id)`.
    async fn usage_after(
        &self,
        user_hash: &str,
        after: Option<(OffsetDateTime, Uuid)>,
        limit: i64,
    ) -> Result<Vec<UsageRecord>, StoreError>;

    /// Deletes everything an owner has, in one transaction: conversations and their
    /// messages (the only path allowed to delete messages besides retention), file records,
    /// API keys, idempotency keys, and usage rows under any of `user_hashes` or about the
    /// owner's conversations. Returns what went, and the id and storage key of every file
    /// row deleted: their bytes are the caller's to delete.
    async fn purge_owner(
        &self,
        owner: &str,
        user_hashes: &[String],
    ) -> Result<(PurgeReport, Vec<(Uuid, String)>), StoreError>;
}
