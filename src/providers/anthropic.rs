//! Anthropic's Messages API: the system prompt at the top level, `max_tokens` required, the
//! `anthropic-version` header, and its streaming events and error bodies.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::sse;
use super::{
    ChatRequest, ChatResponse, ChunkStream, FinishReason, Part, Provider, ProviderChunk,
    ProviderError, Speaker, Timeouts, Usage,
};

pub const API_VERSION: &str = "2023-06-01";
/// Anthropic requires `max_tokens`; this is sent when the caller set none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

pub struct AnthropicProvider {
    name: String,
    messages_url: reqwest::Url,
    client: reqwest::Client,
    read_timeout: Duration,
    request_timeout: Duration,
}

impl AnthropicProvider {
    pub fn new(
        name: &str,
        base_url: &str,
        api_key: &str,
        timeouts: Timeouts,
    ) -> Result<Self, String> {
        crate::tls::ensure_crypto_provider();
        let mut headers = HeaderMap::new();
        let mut key = HeaderValue::from_str(api_key)
            .map_err(|_| "the API key is not a valid header value".to_owned())?;
        key.set_sensitive(true);
        headers.insert("x-api-key", key);
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        let client = reqwest::Client::builder()
            // A provider API does not redirect; not following saves a URL parse per call.
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .connect_timeout(timeouts.connect)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            name: name.to_owned(),
            // Parsed once: reqwest would parse a string URL again on every call.
            messages_url: reqwest::Url::parse(&format!(
                "{}/v1/messages",
                base_url.trim_end_matches('/')
            ))
            .map_err(|e| format!("base URL {base_url}: {e}"))?,
            client,
            read_timeout: timeouts.read,
            request_timeout: timeouts.request,
        })
    }

    fn body(request: &ChatRequest, stream: bool) -> Value {
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| {
                let role = match m.speaker {
                    Speaker::User => "user",
                    Speaker::Assistant => "assistant",
                };
                let content: Vec<Value> = m
                    .parts
                    .iter()
                    .map(|p| match p {
                        Part::Text(t) => json!({"type": "text", "text": t}),
                        Part::Image { mime, base64 } => json!({
                            "type": "image",
                            "source": {"type": "base64", "media_type": mime, "data": base64}
                        }),
                    })
                    .collect();
                json!({"role": role, "content": content})
            })
            .collect();
        let mut body = json!({
            "model": request.model,
            "messages": messages,
            "max_tokens": request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            "stream": stream,
        });
        if let Some(system) = &request.system {
            body["system"] = json!(system);
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if !request.stop.is_empty() {
            body["stop_sequences"] = json!(request.stop);
        }
        if let Some(user) = &request.user {
            body["metadata"] = json!({"user_id": user});
        }
        body
    }

    async fn post(
        &self,
        body: &Value,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut call = self.client.post(self.messages_url.clone()).json(body);
        if let Some(t) = timeout {
            call = call.timeout(t);
        }
        let response = call.send().await.map_err(|e| sse::transport(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let retry_after = sse::retry_after(response.headers());
        let body = sse::error_body(response).await;
        tracing::warn!(provider = %self.name, status, body = %body, "provider error");
        Err(classify(status, &body, retry_after))
    }
}

/// Maps Anthropic's error status and `{"type": "error", "error": {"type", "message"}}`.
fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> ProviderError {
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let kind = parsed["error"]["type"].as_str().unwrap_or("");
    let message = parsed["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_ascii_lowercase();
    match (status, kind) {
        (400 | 413, _) if message.contains("prompt is too long") => ProviderError::ContextLength,
        (401 | 403, _) | (_, "authentication_error" | "permission_error") => ProviderError::Auth,
        (429, _) | (_, "rate_limit_error") => ProviderError::RateLimited { retry_after },
        (529, _) | (_, "overloaded_error") => ProviderError::Unavailable("overloaded".into()),
        (500..=599, _) | (_, "api_error") => ProviderError::Unavailable(format!("status {status}")),
        _ => ProviderError::BadRequest(format!("status {status} {kind}")),
    }
}

fn stop_reason(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Anthropic counts cache reads and writes outside `input_tokens`; ours includes them.
fn usage_of(u: &Value) -> (u64, u64, u64) {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let cached = n("cache_read_input_tokens");
    (
        n("input_tokens") + cached + n("cache_creation_input_tokens"),
        cached,
        n("output_tokens"),
    )
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let response = self
            .post(&Self::body(request, false), Some(self.request_timeout))
            .await?;
        let bytes = response.bytes().await.map_err(|e| sse::broken_body(&e))?;
        let message: Value = serde_json::from_slice(&bytes).map_err(|e| {
            tracing::warn!(error = %e, "unreadable message");
            ProviderError::Protocol("unreadable message".into())
        })?;
        let content: String = message["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect();
        let usage = message.get("usage").map(|u| {
            let (input, cached, output) = usage_of(u);
            Usage {
                input_tokens: input,
                output_tokens: output,
                cached_input_tokens: cached,
                estimated: false,
            }
        });
        Ok(ChatResponse {
            content,
            usage,
            finish_reason: message["stop_reason"]
                .as_str()
                .map_or(FinishReason::Stop, stop_reason),
        })
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChunkStream, ProviderError> {
        let response = self.post(&Self::body(request, true), None).await?;
        // Usage arrives in two halves: input in message_start, output in message_delta.
        let mut input = (0u64, 0u64);
        let mut saw_input = false;
        let chunks = sse::events(response, self.read_timeout).flat_map(move |event| {
            let out: Vec<Result<ProviderChunk, ProviderError>> = match event {
                Err(e) => vec![Err(e)],
                Ok(event) => {
                    let data: Value = match serde_json::from_str(&event.data) {
                        Ok(v) => v,
                        Err(_) if event.event == "ping" => Value::Null,
                        Err(e) => {
                            return futures_util::stream::iter(vec![Err(ProviderError::Protocol(
                                format!("bad stream event: {e}"),
                            ))]);
                        }
                    };
                    match event.event.as_str() {
                        "message_start" => {
                            let (i, c, _) = usage_of(&data["message"]["usage"]);
                            input = (i, c);
                            saw_input = true;
                            vec![]
                        }
                        "content_block_delta" => match data["delta"]["text"].as_str() {
                            Some(t) if !t.is_empty() => {
                                vec![Ok(ProviderChunk::Delta(t.to_owned()))]
                            }
                            _ => vec![],
                        },
                        "message_delta" => {
                            let mut out = Vec::new();
                            if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                                out.push(Ok(ProviderChunk::Finish(stop_reason(reason))));
                            }
                            if let Some(output) = data["usage"]["output_tokens"].as_u64()
                                && saw_input
                            {
                                out.push(Ok(ProviderChunk::Usage(Usage {
                                    input_tokens: input.0,
                                    cached_input_tokens: input.1,
                                    output_tokens: output,
                                    estimated: false,
                                })));
                            }
                            out
                        }
                        "error" => {
                            tracing::warn!(body = %event.data, "provider error inside a stream");
                            let kind = data["error"]["type"].as_str().unwrap_or("");
                            let status = if kind == "overloaded_error" { 529 } else { 500 };
                            vec![Err(classify(status, &event.data, None))]
                        }
                        // ping, content_block_start/stop, message_stop, and future events.
                        _ => vec![],
                    }
                }
            };
            futures_util::stream::iter(out)
        });
        Ok(Box::pin(chunks))
    }
}
