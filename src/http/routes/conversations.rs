//! Conversations: `POST /v1/conversations`, `GET /v1/conversations/{id}` and its messages
//! page by page (`GET /v1/conversations/{id}/messages`), owner-scoped.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::conversations::{self, NewConversation};
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

/// One of the caller's conversations.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations", operation_id = "get_conversation",
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses(
        (status = 200, description = "The conversation", body = Conversation),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 404, description = "`not_found` (also for another user's conversation)", body = ErrorEnvelope),
    ))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<ApiJson<Conversation>, ApiError> {
    // Parsed here rather than by `Path<Uuid>` so a bad id gets the envelope, not axum's text.
    let id = path_id(&id, "conversation")?;
    let conversation = conversations::get(state.store.as_ref(), &principal, id).await?;
    Ok(ApiJson(conversation))
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
    let (data, has_more) = conversations::messages(
        state.store.as_ref(),
        &principal,
        id,
        query.before,
        query.limit,
    )
    .await?;
    let next_cursor = if has_more {
        data.last().map(|m| m.seq)
    } else {
        None
    };
    Ok(ApiJson(MessagePage {
        data,
        next_cursor,
        has_more,
    }))
}
