//! Chat: `GET /v1/specialists` and `POST /v1/chat/send` (one whole answer as JSON); the
//! request body and its checks, shared with the streamed answer (`routes::stream`).

use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::chat::idempotency::{self, Outcome};
use crate::chat::{ChatInput, ChatOutcome, Compat, Specialist};
use crate::domain::Principal;
use crate::error::{ApiError, ErrorEnvelope};
use crate::http::extract::{ApiJson, JsonBytes};
use crate::http::request_id::RequestId;
use crate::providers::Speaker;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatBody {
    /// Which specialist answers (see `GET /v1/specialists`).
    pub specialist_id: String,
    /// The user's message; at most `chat.max_message_chars` characters.
    pub message: String,
    /// Continue a conversation of yours; without it (and without `conversation_history`) a
    /// new conversation is started.
    pub conversation_id: Option<Uuid>,
    /// Stateless mode: the history travels with the request and only usage is stored.
    pub conversation_history: Option<Vec<HistoryEntry>>,
    /// Your files to attach: text goes into the prompt, images to models that take them.
    #[serde(default)]
    pub file_ids: Vec<Uuid>,
    /// 0 to 2; defaults to the specialist's.
    pub temperature: Option<f32>,
    /// Defaults to the specialist's.
    pub max_tokens: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    #[schema(example = "user")]
    pub role: HistoryRole,
    pub content: String,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HistoryRole {
    User,
    Assistant,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatReply {
    pub content: String,
    pub conversation_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    pub specialist_id: String,
    pub specialist_name: String,
    pub provider: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub usage_estimated: bool,
    pub estimated_cost_usd: f64,
    pub latency_ms: u64,
    pub finish_reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SpecialistList {
    pub data: Vec<Specialist>,
}

pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn usd(nano: i64) -> f64 {
    nano as f64 / 1e9
}

pub(super) fn input(body: ChatBody) -> Result<ChatInput, ApiError> {
    if body.conversation_id.is_some() && body.conversation_history.is_some() {
        return Err(ApiError::invalid_field(
            "conversation_history",
            "Invalid field `conversation_history`: cannot be combined with conversation_id",
        ));
    }
    Ok(ChatInput {
        specialist_id: body.specialist_id,
        message: body.message,
        conversation_id: body.conversation_id,
        conversation_history: body.conversation_history.map(|h| {
            h.into_iter()
                .map(|e| {
                    let speaker = match e.role {
                        HistoryRole::User => Speaker::User,
                        HistoryRole::Assistant => Speaker::Assistant,
                    };
                    (speaker, e.content)
                })
                .collect()
        }),
        file_ids: body.file_ids,
        temperature: body.temperature,
        max_tokens: body.max_tokens,
        compat: Compat::default(),
    })
}

/// The specialists you may chat with.
#[utoipa::path(get, path = "/v1/specialists", tag = "chat", operation_id = "list_specialists",
    responses((status = 200, description = "Specialists", body = SpecialistList)))]
pub async fn specialists(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiJson<SpecialistList> {
    ApiJson(SpecialistList {
        data: state
            .chat
            .specialists()
            .for_role(principal.role)
            .cloned()
            .collect(),
    })
}

/// One whole answer. `Server-Timing` separates the server's own time from the provider's.
/// With an `Idempotency-Key` header, a repeat with the same key and body within 24 hours
/// returns the stored answer (header `Idempotent-Replayed: true`) without calling the model
/// again.
#[utoipa::path(post, path = "/v1/chat/send", tag = "chat", operation_id = "chat_send",
    request_body = ChatBody,
    responses(
        (status = 200, description = "The answer", body = ChatReply),
        (status = 402, description = "`budget_exceeded`: the call's worst case does not fit your monthly budget", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: viewers cannot chat", body = ErrorEnvelope),
        (status = 404, description = "`specialist_not_found`, or `not_found` for a conversation or file that is not yours", body = ErrorEnvelope),
        (status = 409, description = "`idempotency_key_in_progress`", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`, `attachment_not_supported`, `context_length_exceeded`, `content_filtered`, `idempotency_key_reused`", body = ErrorEnvelope),
        (status = 502, description = "`upstream_error`", body = ErrorEnvelope),
        (status = 503, description = "`upstream_unavailable`, `upstream_rate_limited`, `provider_not_configured`, `budget_unavailable`", body = ErrorEnvelope),
        (status = 504, description = "`upstream_timeout`", body = ErrorEnvelope),
    ))]
pub async fn send(
    State(state): State<AppState>,
    principal: Principal,
    Extension(request_id): Extension<RequestId>,
    headers: axum::http::HeaderMap,
    JsonBytes(raw): JsonBytes,
) -> Result<Response, ApiError> {
    let input = input(crate::http::extract::parse::<ChatBody>(&raw)?)?;
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let owner = principal.user_id.clone();
    if let Some(key) = &key {
        if !idempotency::valid_key(key) {
            return Err(ApiError::invalid_field(
                "Idempotency-Key",
                "The Idempotency-Key header must be 1 to 255 visible ASCII characters.",
            ));
        }
        match idempotency::begin(
            state.chat.store(),
            &owner,
            key,
            // Parsed a second time only here: the hash is of the JSON, not of its spelling.
            &idempotency::body_hash(&crate::http::extract::parse(&raw)?),
            time::Duration::seconds(state.config.chat.max_generation_secs as i64 + 60),
        )
        .await?
        {
            Outcome::Proceed => {}
            Outcome::Replay(stored) => {
                let mut response =
                    ([(header::CONTENT_TYPE, "application/json")], stored).into_response();
                response.headers_mut().insert(
                    HeaderName::from_static("idempotent-replayed"),
                    HeaderValue::from_static("true"),
                );
                return Ok(response);
            }
            Outcome::Reused => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "This Idempotency-Key was used with a different body.",
                ));
            }
            Outcome::InProgress => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_progress",
                    "A request with this Idempotency-Key is still running.",
                ));
            }
        }
    }
    let result = state
        .chat
        .send(&principal, input, request_id.0.to_string())
        .await;
    let outcome: ChatOutcome = match result {
        Ok(o) => o,
        Err(e) => {
            if let Some(key) = &key {
                idempotency::release(state.chat.store(), &owner, key).await;
            }
            return Err(e.into());
        }
    };
    let own = outcome.latency.saturating_sub(outcome.provider_latency);
    let timing = format!(
        "app;dur={:.1}, provider;dur={:.1}",
        own.as_secs_f64() * 1000.0,
        outcome.provider_latency.as_secs_f64() * 1000.0
    );
    let reply = ChatReply {
        content: outcome.content,
        conversation_id: outcome.conversation_id,
        message_id: outcome.message_id,
        specialist_id: outcome.specialist_id,
        specialist_name: outcome.specialist_name,
        provider: outcome.provider,
        model: outcome.model,
        input_tokens: outcome.usage.input_tokens,
        output_tokens: outcome.usage.output_tokens,
        usage_estimated: outcome.usage.estimated,
        estimated_cost_usd: usd(outcome.cost_nano_usd),
        latency_ms: ms(outcome.latency),
        finish_reason: outcome.finish_reason,
    };
    if let Some(key) = &key {
        let stored = serde_json::to_string(&reply).unwrap_or_default();
        idempotency::complete(state.chat.store(), &owner, key, &stored).await;
    }
    let mut response = ApiJson(reply).into_response();
    if let Ok(value) = HeaderValue::from_str(&timing) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("server-timing"), value);
    }
    Ok(response)
}
