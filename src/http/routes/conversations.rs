//! Conversations, owner-scoped: create, list (cursor pages, most recently active first), read,
//! rename or archive (`PATCH`), soft-delete, and read their messages page by page.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::conversations::{self, ConversationPatch, NewConversation};
use crate::domain::{Conversation, Message, Principal};
use crate::error::{ApiError, ErrorEnvelope};
use crate::http::extract::{ApiJson, ApiQuery, path_id};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    /// Shown in conversation lists; at most 200 characters.
    pub title: Option<String>,
    /// The specialist this conversation talks to.
    pub specialist_id: Option<String>,
}

/// Starts an empty conversation owned by the caller.
#[utoipa::path(post, path = "/v1/conversations", tag = "conversations", operation_id = "create_conversation",
    request_body = CreateConversation,
    responses(
        (status = 201, description = "Created", body = Conversation),
        (status = 400, description = "`malformed_json`", body = ErrorEnvelope),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: viewers cannot create", body = ErrorEnvelope),
        (status = 413, description = "`payload_too_large`", body = ErrorEnvelope),
        (status = 415, description = "`unsupported_media_type`", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`; `details.field` names it", body = ErrorEnvelope),
    ))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateConversation>,
) -> Result<(StatusCode, ApiJson<Conversation>), ApiError> {
    let input = NewConversation {
        title: body.title,
        specialist_id: body.specialist_id,
    };
    let conversation = conversations::create(state.store.as_ref(), &principal, input).await?;
    Ok((StatusCode::CREATED, ApiJson(conversation)))
}

/// A conversation with the newest page of its messages, what a chat view opens with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationDetail {
    #[serde(flatten)]
    pub conversation: Conversation,
    /// The newest messages (as `GET /v1/conversations/{id}/messages` with no `before`).
    pub messages: MessagePage,
}

/// One of the caller's conversations, with its newest page of messages.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations", operation_id = "get_conversation",
    params(("id" = Uuid, Path, description = "Conversation id"), MessagesQuery),
    responses(
        (status = 200, description = "The conversation and its newest messages", body = ConversationDetail),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 404, description = "`not_found` (also for another user's conversation)", body = ErrorEnvelope),
    ))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<MessagesQuery>,
) -> Result<ApiJson<ConversationDetail>, ApiError> {
    // Parsed here rather than by `Path<Uuid>` so a bad id gets the envelope, not axum's text.
    let id = path_id(&id, "conversation")?;
    let (conversation, messages) = open(&state, &principal, id, query).await?;
    Ok(ApiJson(ConversationDetail {
        conversation,
        messages,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// `next_cursor` of the previous page: only messages older than this `seq`.
    pub before: Option<i64>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    /// Newest first.
    pub data: Vec<Message>,
    /// Pass as `before` for the next (older) page; null on the last one.
    pub next_cursor: Option<i64>,
    pub has_more: bool,
}

/// A conversation's messages, newest first, a page at a time for scrolling up. Pages are
/// cut by `seq`, so messages appended meanwhile never shift or repeat them.
#[utoipa::path(get, path = "/v1/conversations/{id}/messages", tag = "conversations", operation_id = "list_messages",
    params(("id" = Uuid, Path, description = "Conversation id"), MessagesQuery),
    responses(
        (status = 200, description = "A page of messages", body = MessagePage),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 404, description = "`not_found` (also for another user's conversation)", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`: bad `limit` or `before`", body = ErrorEnvelope),
    ))]
pub async fn messages(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<MessagesQuery>,
) -> Result<ApiJson<MessagePage>, ApiError> {
    let id = path_id(&id, "conversation")?;
    let (_, messages) = open(&state, &principal, id, query).await?;
    Ok(ApiJson(messages))
}

async fn open(
    state: &AppState,
    principal: &Principal,
    id: uuid::Uuid,
    query: MessagesQuery,
) -> Result<(Conversation, MessagePage), ApiError> {
    let (conversation, data, next_cursor) = conversations::open(
        state.store.as_ref(),
        principal,
        id,
        query.before,
        query.limit,
    )
    .await?;
    let page = MessagePage {
        data,
        has_more: next_cursor.is_some(),
        next_cursor,
    };
    Ok((conversation, page))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListConversationsQuery {
    /// true: only archived conversations; false (the default): only the others.
    pub archived: Option<bool>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationPage {
    /// Most recently active first.
    pub data: Vec<Conversation>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// Your conversations, most recently active first (a new message moves one to the top).
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", operation_id = "list_conversations",
    params(ListConversationsQuery),
    responses(
        (status = 200, description = "A page of conversations", body = ConversationPage),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`: bad `limit` or `cursor`", body = ErrorEnvelope),
    ))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListConversationsQuery>,
) -> Result<ApiJson<ConversationPage>, ApiError> {
    let (data, next_cursor) = conversations::list(
        state.store.as_ref(),
        &principal,
        query.archived.unwrap_or(false),
        query.cursor.as_deref(),
        query.limit,
    )
    .await?;
    Ok(ApiJson(ConversationPage {
        data,
        has_more: next_cursor.is_some(),
        next_cursor,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConversation {
    /// The new title (at most 200 characters); null or empty clears it.
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    #[schema(value_type = Option<String>)]
    pub title: Option<Option<String>>,
    /// true archives it (hidden from the default list), false brings it back.
    pub archived: Option<bool>,
}

/// Renames, archives or unarchives one of your conversations.
#[utoipa::path(patch, path = "/v1/conversations/{id}", tag = "conversations", operation_id = "update_conversation",
    params(("id" = Uuid, Path, description = "Conversation id")),
    request_body = UpdateConversation,
    responses(
        (status = 200, description = "The conversation as it is now", body = Conversation),
        (status = 400, description = "`malformed_json`", body = ErrorEnvelope),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: viewers cannot change", body = ErrorEnvelope),
        (status = 404, description = "`not_found` (also for another user's conversation)", body = ErrorEnvelope),
        (status = 415, description = "`unsupported_media_type`", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`; `details.field` names it", body = ErrorEnvelope),
    ))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateConversation>,
) -> Result<ApiJson<Conversation>, ApiError> {
    let id = path_id(&id, "conversation")?;
    let patch = ConversationPatch {
        title: body.title,
        archived: body.archived,
    };
    let conversation = conversations::update(state.store.as_ref(), &principal, id, patch).await?;
    Ok(ApiJson(conversation))
}

/// Deletes one of your conversations: it disappears from lists, reads and chat at once.
#[utoipa::path(delete, path = "/v1/conversations/{id}", tag = "conversations", operation_id = "delete_conversation",
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: viewers cannot delete", body = ErrorEnvelope),
        (status = 404, description = "`not_found` (also for another user's, or one already deleted)", body = ErrorEnvelope),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id, "conversation")?;
    conversations::delete(state.store.as_ref(), &principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
