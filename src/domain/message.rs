//! Messages: append-only entries of a conversation, numbered by `seq` within it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Assistant,
    System,
    Tool,
}

impl MessageRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::System => "system",
            Self::Tool => "tool",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "user" => Self::User,
            "assistant" => Self::Assistant,
            "system" => Self::System,
            "tool" => Self::Tool,
            _ => return None,
        })
    }
}

/// How a message ended: `complete`, `error` (the provider failed) or `cut` (stopped at a bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Complete,
    Error,
    Cut,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Error => "error",
            Self::Cut => "cut",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "complete" => Self::Complete,
            "error" => Self::Error,
            "cut" => Self::Cut,
            _ => return None,
        })
    }
}

/// A message to append; the store assigns `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub role: MessageRole,
    pub content: String,
    pub attachments: serde_json::Value,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub status: MessageStatus,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Message {
    pub id: Uuid,
    pub conversation_id: Uuid,
    /// 1, 2, 3… within the conversation, never reused.
    pub seq: i64,
    pub role: MessageRole,
    pub content: String,
    #[schema(value_type = Object)]
    pub attachments: serde_json::Value,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub status: MessageStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl Message {
    /// The stored form of a new message once the store has numbered it.
    pub fn from_new(new: &NewMessage, seq: i64) -> Self {
        Self {
            id: new.id,
            conversation_id: new.conversation_id,
            seq,
            role: new.role,
            content: new.content.clone(),
            attachments: new.attachments.clone(),
            input_tokens: new.input_tokens,
            output_tokens: new.output_tokens,
            status: new.status,
            created_at: new.created_at,
        }
    }
}
