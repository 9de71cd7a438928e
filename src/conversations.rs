//! The conversations service: owner-scoped creation and lookup. Owns ids and timestamps.

use uuid::Uuid;

use crate::domain::ids::now_utc;
use crate::domain::{Conversation, Message, Principal, Role, new_id};
use crate::store::{Store, StoreError};

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_SPECIALIST_ID_CHARS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    #[error("conversation not found")]
    NotFound,
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("role {0:?} may not do this")]
    Forbidden(Role),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct NewConversation {
    pub title: Option<String>,
    pub specialist_id: Option<String>,
}

pub async fn create(
    store: &dyn Store,
    principal: &Principal,
    input: NewConversation,
) -> Result<Conversation, ConversationError> {
    if !principal.has_role(Role::User) {
        return Err(ConversationError::Forbidden(principal.role));
    }
    let title = clean(input.title, "title", MAX_TITLE_CHARS)?;
    let specialist_id = clean(
        input.specialist_id,
        "specialist_id",
        MAX_SPECIALIST_ID_CHARS,
    )?;
    let now = now_utc();
    let conversation = Conversation {
        id: new_id(),
        owner: principal.user_id.clone(),
        title,
        specialist_id,
        message_count: 0,
        created_at: now,
        updated_at: now,
        archived_at: None,
        deleted_at: None,
    };
    store.create_conversation(&conversation).await?;
    Ok(conversation)
}

/// Another owner's conversation is reported as not found, so ids cannot be probed.
pub async fn get(
    store: &dyn Store,
    principal: &Principal,
    id: Uuid,
) -> Result<Conversation, ConversationError> {
    match store.get_conversation(id).await? {
        Some(c) if c.owner == principal.user_id => Ok(c),
        _ => Err(ConversationError::NotFound),
    }
}

/// Page sizes of `messages`: 1 to `MAX_PAGE`, `DEFAULT_PAGE` when not given.
pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 200;

/// A page of one of the caller's conversations, newest first, before message `before`
/// (its `seq`); and whether older messages remain.
pub async fn messages(
    store: &dyn Store,
    principal: &Principal,
    id: Uuid,
    before: Option<i64>,
    limit: Option<i64>,
) -> Result<(Vec<Message>, bool), ConversationError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ConversationError::Invalid {
            field: "limit",
            problem: format!("must be between 1 and {MAX_PAGE}"),
        });
    }
    if before.is_some_and(|b| b < 1) {
        return Err(ConversationError::Invalid {
            field: "before",
            problem: "must be a message seq, 1 or more".into(),
        });
    }
    let conversation = get(store, principal, id).await?;
    // One more than asked tells whether another page follows.
    let mut page = store
        .messages_before(conversation.id, before, limit + 1)
        .await?;
    let has_more = page.len() as i64 > limit;
    page.truncate(limit as usize);
    Ok((page, has_more))
}

fn clean(
    value: Option<String>,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, ConversationError> {
    let Some(value) = value else { return Ok(None) };
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.chars().count() > max {
        return Err(ConversationError::Invalid {
            field,
            problem: format!("at most {max} characters"),
        });
    }
    if trimmed.chars().any(|c| c.is_control()) {
        return Err(ConversationError::Invalid {
            field,
            problem: "control characters are not allowed".into(),
        });
    }
    Ok(Some(trimmed.to_owned()))
}
