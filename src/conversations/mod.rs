//! The conversations service: owner-scoped creation, lookup, listing, changes and soft
//! deletion. Owns ids, timestamps and the list's cursor.

pub mod search;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;
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

/// What `PATCH` may change; `None` leaves a field as it is, `Some(None)` clears the title.
#[derive(Debug, Default)]
pub struct ConversationPatch {
    pub title: Option<Option<String>>,
    pub archived: Option<bool>,
}

/// A page of the caller's live conversations, most recently active first, and the cursor of
/// the next page when there is one.
pub async fn list(
    store: &dyn Store,
    principal: &Principal,
    archived: bool,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<(Vec<Conversation>, Option<String>), ConversationError> {
    let limit = page_size(limit)?;
    let after = cursor.map(decode_cursor).transpose()?;
    let rows = store
        .list_conversations(&principal.user_id, archived, after, limit + 1)
        .await?;
    Ok(cut(rows, limit, |c| encode_cursor(c.updated_at, c.id)))
}

/// Renames, archives or unarchives one of the caller's conversations. Neither counts as
/// activity: the list's order is by messages.
pub async fn update(
    store: &dyn Store,
    principal: &Principal,
    id: Uuid,
    patch: ConversationPatch,
) -> Result<Conversation, ConversationError> {
    if !principal.has_role(Role::User) {
        return Err(ConversationError::Forbidden(principal.role));
    }
    let mut current = get(store, principal, id).await?;
    let title = match patch.title {
        None => None,
        Some(t) => Some(clean(t, "title", MAX_TITLE_CHARS)?),
    };
    let archived_at = patch
        .archived
        .and_then(|archive| match (archive, current.archived_at) {
            (true, None) => Some(Some(now_utc())),
            (false, Some(_)) => Some(None),
            // Already as asked: the first archive time stays.
            _ => None,
        });
    let changed = store
        .update_conversation(id, title.as_ref().map(Option::as_deref), archived_at)
        .await?;
    if !changed {
        return Err(ConversationError::NotFound);
    }
    // What the row now holds, without reading it back.
    if let Some(title) = title {
        current.title = title;
    }
    if let Some(archived_at) = archived_at {
        current.archived_at = archived_at;
    }
    Ok(current)
}

/// Soft-deletes one of the caller's conversations: from now on it is not found anywhere.
pub async fn delete(
    store: &dyn Store,
    principal: &Principal,
    id: Uuid,
) -> Result<(), ConversationError> {
    if !principal.has_role(Role::User) {
        return Err(ConversationError::Forbidden(principal.role));
    }
    get(store, principal, id).await?;
    if !store.delete_conversation(id, now_utc()).await? {
        return Err(ConversationError::NotFound);
    }
    Ok(())
}

/// Opaque to clients: the last row's activity time (ns) and id.
fn encode_cursor(updated_at: OffsetDateTime, id: Uuid) -> String {
    keyset_cursor(&updated_at.unix_timestamp_nanos().to_string(), id)
}

fn decode_cursor(cursor: &str) -> Result<(OffsetDateTime, Uuid), ConversationError> {
    open_keyset_cursor(cursor, |nanos| {
        OffsetDateTime::from_unix_timestamp_nanos(nanos.parse().ok()?).ok()
    })
}

/// A page cursor, opaque to clients: the last row's sort key (as text) and id.
fn keyset_cursor(key: &str, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{key}|{id}"))
}

/// The sort key (read by `key`) and id of a cursor `keyset_cursor` made; anything else is
/// the one `invalid_field` answer.
fn open_keyset_cursor<K>(
    cursor: &str,
    key: impl FnOnce(&str) -> Option<K>,
) -> Result<(K, Uuid), ConversationError> {
    let parts = URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            let (k, id) = text.split_once('|')?;
            Some((key(k)?, id.parse().ok()?))
        });
    parts.ok_or_else(|| ConversationError::Invalid {
        field: "cursor",
        problem: "not a cursor this API gave out".into(),
    })
}

fn page_size(limit: Option<i64>) -> Result<i64, ConversationError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ConversationError::Invalid {
            field: "limit",
            problem: format!("must be between 1 and {MAX_PAGE}"),
        });
    }
    Ok(limit)
}

/// Page sizes of lists: 1 to `MAX_PAGE`, `DEFAULT_PAGE` when not given.
pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 200;

/// One of the caller's conversations and a page of its messages, newest first, before
/// message `before` (its `seq`), with the cursor (a `seq`) of the next, older page.
pub async fn open(
    store: &dyn Store,
    principal: &Principal,
    id: Uuid,
    before: Option<i64>,
    limit: Option<i64>,
) -> Result<(Conversation, Vec<Message>, Option<i64>), ConversationError> {
    let limit = page_size(limit)?;
    if before.is_some_and(|b| b < 1) {
        return Err(ConversationError::Invalid {
            field: "before",
            problem: "must be a message seq, 1 or more".into(),
        });
    }
    let conversation = get(store, principal, id).await?;
    let rows = store
        .messages_before(conversation.id, before, limit + 1)
        .await?;
    let (page, next) = cut(rows, limit, |m| m.seq);
    Ok((conversation, page, next))
}

/// A page fetched with one row more than `limit`: the extra row, dropped, tells that
/// another page follows, whose cursor is taken from the page's last row.
fn cut<T, C>(mut rows: Vec<T>, limit: i64, cursor: impl Fn(&T) -> C) -> (Vec<T>, Option<C>) {
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = if has_more {
        rows.last().map(cursor)
    } else {
        None
    };
    (rows, next)
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
