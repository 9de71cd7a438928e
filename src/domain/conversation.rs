//! A conversation: an owner's thread of messages with one specialist.

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Conversation {
    pub id: Uuid,
    /// The owner's user id (the token subject).
    #[serde(skip)]
    pub owner: String,
    pub title: Option<String>,
    pub specialist_id: Option<String>,
    /// How many messages it holds; the next message gets `seq = message_count + 1`.
    pub message_count: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub archived_at: Option<OffsetDateTime>,
    #[serde(skip)]
    pub deleted_at: Option<OffsetDateTime>,
}
