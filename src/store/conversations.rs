//! Conversations and their append-only messages.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::domain::{Conversation, Message, NewMessage};

#[async_trait]
pub trait ConversationStore: Send + Sync {
    async fn create_conversation(&self, conversation: &Conversation) -> Result<(), StoreError>;

    /// A conversation by id, unless soft-deleted.
    async fn get_conversation(&self, id: Uuid) -> Result<Option<Conversation>, StoreError>;

    /// Appends a message, numbering it after the conversation's last one and touching the
    /// conversation's `updated_at`, atomically.
    async fn append_message(&self, message: &NewMessage) -> Result<Message, StoreError>;

    /// A conversation's messages in order.
    async fn list_messages(&self, conversation_id: Uuid) -> Result<Vec<Message>, StoreError>;

    /// An owner's live conversations, most recently active first, archived ones or the
    /// others, after the keyset `(updated_at, id)` of the previous page.
    async fn list_conversations(
        &self,
        owner: &str,
        archived: bool,
        after: Option<(OffsetDateTime, Uuid)>,
        limit: i64,
    ) -> Result<Vec<Conversation>, StoreError>;

    /// Sets a live conversation's title and/or archive time (`None`: leave it as it is);
    /// false when there is no such live conversation.
    async fn update_conversation(
        &self,
        id: Uuid,
        title: Option<Option<&str>>,
        archived_at: Option<Option<OffsetDateTime>>,
    ) -> Result<bool, StoreError>;

    /// Sets the title of a live conversation that has none; false when it has one (the
    /// user's, which must never be overwritten) or is gone.
    async fn set_title_if_untitled(&self, id: Uuid, title: &str) -> Result<bool, StoreError>;

    /// Soft-deletes a conversation: gone from lists and reads; its rows stay until purged.
    async fn delete_conversation(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError>;

    /// Up to `limit` messages with `seq` below `before` (all when `None`), newest first: a
    /// keyset page over the (conversation_id, seq) index, stable while messages are appended.
    async fn messages_before(
        &self,
        conversation_id: Uuid,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Message>, StoreError>;
}
