//! The streamed answer: `POST /v1/chat/stream` (Server-Sent Events: `start`, `delta`…,
//! then `done` or `error`, each with an `id:`) and `GET /v1/chat/stream/{message_id}` (the
//! same stream, picked up again after a lost connection).

use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::chat::{ChatBody, input, ms, usd};
use crate::chat::ChatEvent;
use crate::domain::Principal;
use crate::error::{ApiError, ErrorEnvelope};
use crate::http::extract::ApiJson;
use crate::http::request_id::RequestId;
use crate::http::sse;
use crate::state::AppState;

/// The `delta` event: the next piece of the answer.
#[derive(Serialize)]
struct DeltaEvent<'a> {
    content: &'a str,
}

/// The `done` event.
#[derive(Debug, Serialize, ToSchema)]
pub struct DoneEvent {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub usage_estimated: bool,
    pub estimated_cost_usd: f64,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    /// Time spent waiting on the provider; the rest is the server's own.
    pub provider_ms: u64,
    pub finish_reason: String,
}

/// A streamed answer as Server-Sent Events: `start` {conversation_id, message_id,
/// specialist_id, model, request_id}, `delta` {content}…, then `done` (usage, cost, timings,
/// finish reason) or `error` {code, message}. Every event has an `id:`: how many bytes of
/// the answer's text (UTF-8) were sent up to and including it (`start` is 0), which is
/// what `GET /v1/chat/stream/{message_id}` takes as `Last-Event-ID` to pick the stream up
/// after a lost connection. Keep-alive comments are sent while waiting. The answer is
/// finished, stored and accounted even if the client disconnects.
#[utoipa::path(post, path = "/v1/chat/stream", tag = "chat", operation_id = "chat_stream",
    request_body = ChatBody,
    responses(
        (status = 200, description = "An event stream (`start`, `delta`, `done` | `error`)", content_type = "text/event-stream", body = DoneEvent),
        (status = 402, description = "`budget_exceeded`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`", body = ErrorEnvelope),
        (status = 404, description = "`specialist_not_found` or `not_found`", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`, `attachment_not_supported`", body = ErrorEnvelope),
        (status = 503, description = "`budget_unavailable`", body = ErrorEnvelope),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    principal: Principal,
    Extension(request_id): Extension<RequestId>,
    ApiJson(body): ApiJson<ChatBody>,
) -> Result<Response, ApiError> {
    let request_id = request_id.0.to_string();
    let (start, rx) = state
        .chat
        .stream(&principal, input(body)?, request_id.clone())
        .await?;
    let start = serde_json::json!({
        "conversation_id": start.conversation_id,
        "message_id": start.message_id,
        "specialist_id": start.specialist_id,
        "model": start.model,
        "request_id": request_id,
    });
    // Each event is serialized straight into its frame: a delta is the hot path of a
    // stream, one per token. Ids are byte offsets into the answer (see `resume`).
    let first = sse::frame(0, "start", &start);
    let mut offset = 0;
    // Counted open while the response body (which owns this closure) lives.
    let open = sse::OpenStream::new();
    let events = futures_util::stream::once(async move { first }).chain(
        crate::chat::events(rx).map(move |event| {
            let _ = &open;
            if let ChatEvent::Delta(content) = &event {
                offset += content.len();
            }
            event_frame(offset, &event)
        }),
    );
    let keepalive = Duration::from_secs(state.config.chat.keepalive_secs);
    Ok(sse::response(events, keepalive))
}

/// Picks up a stream whose connection was lost, from just after the last event received:
/// the rest of the answer as it comes, then `done` or `error`, as on the first connection
/// (no `start`). Works on the instance running the answer, while it runs and for a minute
/// after; later, or elsewhere, `stream_not_found`: the stored message is then in the
/// conversation. A stream's event ids are byte offsets into its answer, so `Last-Event-ID`
/// says how much of it the client has.
#[utoipa::path(get, path = "/v1/chat/stream/{message_id}", tag = "chat", operation_id = "chat_stream_resume",
    params(
        ("message_id" = Uuid, Path, description = "The `message_id` of the stream's `start` event"),
        ("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received (absent: the answer from its start)"),
    ),
    responses(
        (status = 200, description = "The rest of the event stream (`delta`…, `done` | `error`)", content_type = "text/event-stream", body = DoneEvent),
        (status = 404, description = "`stream_not_found`: not running on this instance (any more)", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`: `Last-Event-ID` is not a position in this answer", body = ErrorEnvelope),
    ))]
pub async fn resume(
    State(state): State<AppState>,
    principal: Principal,
    Path(message_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Ok(message_id) = Uuid::parse_str(&message_id) else {
        return Err(crate::chat::ChatError::StreamNotFound.into());
    };
    let from = match headers.get("last-event-id") {
        None => 0,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "Last-Event-ID",
                    "Last-Event-ID must be the id of an event of this stream (a whole number).",
                )
            })?,
    };
    let rest = state.chat.follow(&principal, message_id, from)?;
    let open = sse::OpenStream::new();
    let events = rest.map(move |(offset, event)| {
        let _ = &open;
        event_frame(offset, &event)
    });
    let keepalive = Duration::from_secs(state.config.chat.keepalive_secs);
    Ok(sse::response(events, keepalive))
}

/// One event's frame, with the answer's byte offset after it as its id.
fn event_frame(offset: usize, event: &ChatEvent) -> bytes::Bytes {
    match event {
        ChatEvent::Delta(content) => sse::frame(offset, "delta", &DeltaEvent { content }),
        ChatEvent::Done(o) => sse::frame(
            offset,
            "done",
            &DoneEvent {
                input_tokens: o.usage.input_tokens,
                output_tokens: o.usage.output_tokens,
                usage_estimated: o.usage.estimated,
                estimated_cost_usd: usd(o.cost_nano_usd),
                latency_ms: ms(o.latency),
                ttft_ms: o.ttft.map(ms),
                provider_ms: ms(o.provider_latency),
                finish_reason: o.finish_reason.clone(),
            },
        ),
        ChatEvent::Error { code, message } => sse::frame(
            offset,
            "error",
            &serde_json::json!({ "code": code, "message": message }),
        ),
    }
}
