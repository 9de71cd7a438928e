//! Full-text search over an owner's messages.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::domain::MessageRole;

/// One message that matched, with its whole text (the service cuts the snippet) and its
/// rank: higher is better, comparable only within one search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    pub conversation_title: Option<String>,
    pub seq: i64,
    pub role: MessageRole,
    pub content: String,
    pub created_at: OffsetDateTime,
    pub rank: f64,
}

#[async_trait]
pub trait SearchStore: Send + Sync {
    /// Messages of the owner's live (not deleted) conversations matching `terms`, best
    /// first, after the keyset `(rank, message id)` of the previous page.
    ///
    /// `terms` is in the one syntax both dialects read the same way: double-quoted phrases
    /// of plain words, separated by spaces, all of which must match (`"fox" "lazy dog"`).
    /// The service builds it; raw user input must never get here.
    async fn search_messages(
        &self,
        owner: &str,
        terms: &str,
        after: Option<(f64, Uuid)>,
        limit: i64,
    ) -> Result<Vec<SearchHit>, StoreError>;
}
