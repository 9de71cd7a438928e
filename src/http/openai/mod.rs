//! The OpenAI-compatible API: `POST /v1/chat/completions` (streamed or not) and
//! `GET /v1/models`, so OpenAI's SDKs and the tools built on them work pointed at Colloquy.
//! The calls go through the same chat service as the native routes (auth, rate limits,
//! budgets, usage); only the wire format and the error shape differ.

pub mod errors;
pub mod request;
pub mod wire;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use uuid::Uuid;

use crate::chat::ChatEvent;
use crate::domain::{Principal, Role};
use crate::error::ApiError;
use crate::http::extract::{ApiJson, JsonBytes};
use crate::http::request_id::RequestId;
use crate::http::sse;
use crate::state::AppState;
use errors::{OpenAiError, OpenAiErrorEnvelope};
use request::CompletionRequest;
use wire::{Chunk, ChunkChoice, Completion, Delta, Model, ModelList, WireUsage};

/// Names a conversation of yours to store the exchange in; without it nothing but usage
/// is stored.
pub const X_CONVERSATION_ID: HeaderName = HeaderName::from_static("x-conversation-id");

/// The last line of a stream.
const DONE: &[u8] = b"data: [DONE]\n\n";

/// A chat completion in OpenAI's format. `model` is a specialist id (its system prompt,
/// model and defaults apply; your system messages follow its prompt) or a model the server
/// lets you name directly. With `"stream": true`, Server-Sent Events of
/// `chat.completion.chunk` objects end with `data: [DONE]`; with
/// `stream_options.include_usage`, a last chunk carries the usage. Errors are in OpenAI's
/// shape. With an `X-Conversation-Id` header the user message and the answer are appended
/// to that conversation of yours.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", operation_id = "openai_chat_completions",
    request_body = CompletionRequest,
    params(("X-Conversation-Id" = Option<Uuid>, Header, description = "A conversation of yours to append the exchange to")),
    responses(
        (status = 200, description = "The completion, or with `stream` an event stream of `chat.completion.chunk` objects ending with `data: [DONE]`", body = Completion,
            content((Completion = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "`invalid_field`, `unsupported_parameter`, `unknown_parameter`, `malformed_json`; `param` names the parameter", body = OpenAiErrorEnvelope),
        (status = 401, description = "`invalid_api_key`", body = OpenAiErrorEnvelope),
        (status = 403, description = "`forbidden`: viewers cannot chat", body = OpenAiErrorEnvelope),
        (status = 404, description = "`model_not_found`, or `not_found` for a conversation that is not yours", body = OpenAiErrorEnvelope),
        (status = 429, description = "`rate_limit_exceeded` (see Retry-After), or `insufficient_quota`: the call does not fit your monthly budget (with `x-should-retry: false`)", body = OpenAiErrorEnvelope),
        (status = 502, description = "`upstream_error`", body = OpenAiErrorEnvelope),
        (status = 503, description = "`upstream_unavailable`, `upstream_rate_limited`, `provider_not_configured`, `budget_unavailable`", body = OpenAiErrorEnvelope),
        (status = 504, description = "`upstream_timeout`, `cut`", body = OpenAiErrorEnvelope),
    ))]
pub async fn completions(
    State(state): State<AppState>,
    principal: Principal,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    JsonBytes(raw): JsonBytes,
) -> Result<Response, ApiError> {
    let body: CompletionRequest = crate::http::extract::parse(&raw)?;
    let conversation = match headers.get(&X_CONVERSATION_ID) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| Uuid::parse_str(v.trim()).ok())
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "X-Conversation-Id",
                        "The X-Conversation-Id header must be a conversation id (a UUID).",
                    )
                })?,
        ),
    };
    let model = body.model.clone();
    let parsed = request::parse(body, conversation)?;
    let named = |e: crate::chat::ChatError| for_openai(e.into(), &model);
    let id = format!("chatcmpl-{}", Uuid::now_v7().simple());
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if !parsed.stream {
        let outcome = state
            .chat
            .send(&principal, parsed.input, request_id.0.to_string())
            .await
            .map_err(named)?;
        return Ok(ApiJson(Completion::new(id, created, model, outcome)).into_response());
    }
    let (_, rx) = state
        .chat
        .stream(&principal, parsed.input, request_id.0.to_string())
        .await
        .map_err(named)?;
    let stream = ChunkWriter {
        id,
        created,
        model,
        include_usage: parsed.include_usage,
    };
    let open = sse::OpenStream::new();
    let events = futures_util::stream::once({
        let first = stream.chunk(Delta {
            role: Some("assistant"),
            content: Some(""),
        });
        async move { first }
    })
    .chain(crate::chat::events(rx).map(move |event| {
        // Counted open while the response body (which owns this closure) lives.
        let _ = &open;
        stream.event(event)
    }));
    let keepalive = std::time::Duration::from_secs(state.config.chat.keepalive_secs);
    Ok(sse::response(events, keepalive))
}

/// The specialists and directly named models you may use, as OpenAI model objects.
#[utoipa::path(get, path = "/v1/models", tag = "openai", operation_id = "openai_list_models",
    responses(
        (status = 200, description = "The models you may name", body = ModelList),
        (status = 401, description = "`invalid_api_key`", body = OpenAiErrorEnvelope),
        (status = 429, description = "`rate_limit_exceeded` (see Retry-After)", body = OpenAiErrorEnvelope),
    ))]
pub async fn models(State(state): State<AppState>, principal: Principal) -> ApiJson<ModelList> {
    ApiJson(ModelList {
        object: "list",
        data: usable(&state, &principal).collect(),
    })
}

/// One model you may use. A directly named model's id holds a `/`, kept as is in the path.
#[utoipa::path(get, path = "/v1/models/{model}", tag = "openai", operation_id = "openai_get_model",
    params(("model" = String, Path, description = "A specialist id or a provider/model")),
    responses(
        (status = 200, description = "The model", body = Model),
        (status = 404, description = "`model_not_found`", body = OpenAiErrorEnvelope),
        (status = 429, description = "`rate_limit_exceeded` (see Retry-After)", body = OpenAiErrorEnvelope),
    ))]
pub async fn model(
    State(state): State<AppState>,
    principal: Principal,
    Path(model): Path<String>,
) -> Result<ApiJson<Model>, ApiError> {
    usable(&state, &principal)
        .find(|m| m.id == model)
        .map(ApiJson)
        .ok_or_else(|| not_found(&model))
}

/// Rendered as OpenAI's `model_not_found`.
fn not_found(model: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "specialist_not_found",
        format!("The model `{model}` does not exist or you do not have access to it."),
    )
}

/// Roles that may not chat (viewers) may use no model at all.
fn usable<'a>(state: &'a AppState, principal: &Principal) -> impl Iterator<Item = Model> + 'a {
    let may_chat = principal.has_role(Role::User);
    let specialists = state
        .chat
        .specialists()
        .for_role(principal.role)
        .filter(move |_| may_chat)
        .map(|s| Model {
            id: s.id.clone(),
            object: "model",
            created: 0,
            owned_by: "colloquy".to_owned(),
        });
    let direct = state
        .chat
        .direct_models(principal.role)
        .iter()
        .map(|m| Model {
            id: m.clone(),
            object: "model",
            created: 0,
            owned_by: m.split_once('/').map_or("", |(p, _)| p).to_owned(),
        });
    specialists.chain(direct)
}

/// The chat service's errors in this API's terms: a specialist is a model, and the fields
/// of its own input (message, history, system text) are all in `messages`.
fn for_openai(error: ApiError, model: &str) -> ApiError {
    if error.code() == "specialist_not_found" {
        return not_found(model);
    }
    let field = error
        .details()
        .and_then(|d| d.get("field"))
        .and_then(|f| f.as_str());
    match field {
        Some("message" | "conversation_history" | "system") => {
            let message = error.message().to_owned();
            ApiError::new(error.status(), error.code(), message)
                .with_details(serde_json::json!({ "field": "messages" }))
        }
        _ => error,
    }
}

/// Writes a stream's events as OpenAI chunks.
struct ChunkWriter {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

impl ChunkWriter {
    fn chunk(&self, delta: Delta<'_>) -> Bytes {
        self.frame(
            &[ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: None,
            }],
            None,
        )
    }

    fn frame(&self, choices: &[ChunkChoice<'_>], usage: Option<WireUsage>) -> Bytes {
        sse::data(&Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: None,
            choices,
            usage: self.include_usage.then_some(usage),
        })
    }

    fn event(&self, event: ChatEvent) -> Bytes {
        match event {
            ChatEvent::Delta(content) => self.chunk(Delta {
                role: None,
                content: Some(&content),
            }),
            // The finish chunk, the usage chunk if asked for, and `[DONE]`, in one write.
            ChatEvent::Done(outcome) => {
                let mut out = BytesMut::new();
                out.extend_from_slice(&self.frame(
                    &[ChunkChoice {
                        index: 0,
                        delta: Delta::default(),
                        logprobs: None,
                        finish_reason: Some(wire::finish_reason(&outcome.finish_reason)),
                    }],
                    None,
                ));
                if self.include_usage {
                    out.extend_from_slice(&self.frame(&[], Some(WireUsage::of(&outcome))));
                }
                out.extend_from_slice(DONE);
                out.freeze()
            }
            // OpenAI's SDKs raise an error event as an APIError; no `[DONE]` follows, so
            // no client mistakes the answer for whole.
            ChatEvent::Error { code, message } => {
                let error = ApiError::new(crate::error::status_of(code), code, message);
                let (_, body) = OpenAiError::from_api(&error);
                sse::data(&OpenAiErrorEnvelope { error: body })
            }
        }
    }
}
