//! OpenAI-compatible Chat Completions (OpenAI, Azure OpenAI v1, Ollama, vLLM, llama.cpp,
//! LiteLLM, OpenRouter, Groq...): plain and streamed, streams always asking for usage.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use super::sse;
use super::{
    ChatRequest, ChatResponse, ChunkStream, FinishReason, Part, Provider, ProviderChunk,
    ProviderError, Speaker, Timeouts, Usage,
};

pub struct OpenAiProvider {
    name: String,
    base_url: String,
    client: reqwest::Client,
    read_timeout: Duration,
    request_timeout: Duration,
}

impl OpenAiProvider {
    pub fn new(
        name: &str,
        base_url: &str,
        api_key: &str,
        extra_headers: &[(String, String)],
        timeouts: Timeouts,
    ) -> Result<Self, String> {
        crate::tls::ensure_crypto_provider();
        let mut headers = HeaderMap::new();
        if !api_key.is_empty() {
            let mut value = HeaderValue::from_str(&format!("Bearer {api_key}"))
                .map_err(|_| "the API key is not a valid header value".to_owned())?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        for (k, v) in extra_headers {
            let name =
                HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("bad header name {k}"))?;
            let mut value =
                HeaderValue::from_str(v).map_err(|_| format!("bad value for header {k}"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(timeouts.connect)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            name: name.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            client,
            read_timeout: timeouts.read,
            request_timeout: timeouts.request,
        })
    }

    fn body(&self, request: &ChatRequest, stream: bool) -> Value {
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        if let Some(system) = &request.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        for m in &request.messages {
            let role = match m.speaker {
                Speaker::User => "user",
                Speaker::Assistant => "assistant",
            };
            let content = match m.parts.as_slice() {
                [Part::Text(t)] => json!(t),
                parts => Value::Array(
                    parts
                        .iter()
                        .map(|p| match p {
                            Part::Text(t) => json!({"type": "text", "text": t}),
                            Part::Image { mime, base64 } => json!({
                                "type": "image_url",
                                "image_url": {"url": format!("data:{mime};base64,{base64}")}
                            }),
                        })
                        .collect(),
                ),
            };
            messages.push(json!({"role": role, "content": content}));
        }
        let mut body = json!({"model": request.model, "messages": messages, "stream": stream});
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(n) = request.max_tokens {
            // OpenAI's reasoning models refuse `max_tokens`; everything compatible takes it.
            let m = request.model.to_ascii_lowercase();
            let reasoning = ["o1", "o3", "o4", "gpt-5"].iter().any(|p| m.starts_with(p));
            body[if reasoning {
                "max_completion_tokens"
            } else {
                "max_tokens"
            }] = json!(n);
        }
        if !request.stop.is_empty() {
            body["stop"] = json!(request.stop);
        }
        if let Some(user) = &request.user {
            body["user"] = json!(user);
        }
        if stream {
            // Without this, streamed calls report no usage at all.
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }

    async fn post(
        &self,
        body: &Value,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut call = self
            .client
            .post(format!("{}/chat/completions", self.base_url))
            .json(body);
        if let Some(t) = timeout {
            call = call.timeout(t);
        }
        let response = call.send().await.map_err(|e| sse::transport(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.error_of(response).await)
    }

    async fn error_of(&self, response: reqwest::Response) -> ProviderError {
        let status = response.status().as_u16();
        let retry_after = sse::retry_after(response.headers());
        let body = sse::error_body(response).await;
        tracing::warn!(provider = %self.name, status, body = %body, "provider error");
        classify(status, &body, retry_after)
    }
}

/// Maps an OpenAI-style error status and body.
fn classify(status: u16, body: &str, retry_after: Option<Duration>) -> ProviderError {
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let error = &parsed["error"];
    let code = error["code"]
        .as_str()
        .or_else(|| error["type"].as_str())
        .unwrap_or("");
    let message = error["message"].as_str().unwrap_or("").to_ascii_lowercase();
    match status {
        400 | 413 | 422
            if code == "context_length_exceeded"
                || message.contains("maximum context length")
                || message.contains("context length")
                || message.contains("too many tokens") =>
        {
            ProviderError::ContextLength
        }
        400 if code == "content_filter" || code == "content_policy_violation" => {
            ProviderError::ContentFiltered
        }
        401 | 403 => ProviderError::Auth,
        408 => ProviderError::Timeout,
        429 => ProviderError::RateLimited { retry_after },
        500..=599 => ProviderError::Unavailable(format!("status {status}")),
        _ => ProviderError::BadRequest(format!("status {status}")),
    }
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    delta: Option<WireMessage>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        // OpenAI counts cached tokens inside prompt_tokens, which is our convention too.
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            cached_input_tokens: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
            estimated: false,
        }
    }
}

fn finish(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "content_filter" => FinishReason::ContentFilter,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        other => FinishReason::Other(other.to_owned()),
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let response = self
            .post(&self.body(request, false), Some(self.request_timeout))
            .await?;
        let bytes = response.bytes().await.map_err(|e| sse::broken_body(&e))?;
        let completion: Completion = serde_json::from_slice(&bytes).map_err(|e| {
            tracing::warn!(error = %e, "unreadable completion");
            ProviderError::Protocol("unreadable completion".into())
        })?;
        let choice = completion.choices.into_iter().next();
        let finish_reason = choice
            .as_ref()
            .and_then(|c| c.finish_reason.as_deref())
            .map_or(FinishReason::Stop, finish);
        let content = choice
            .and_then(|c| c.message)
            .and_then(|m| m.content)
            .unwrap_or_default();
        Ok(ChatResponse {
            content,
            usage: completion.usage.map(Usage::from),
            finish_reason,
        })
    }

    async fn stream(&self, request: &ChatRequest) -> Result<ChunkStream, ProviderError> {
        let response = self.post(&self.body(request, true), None).await?;
        let events = sse::events(response, self.read_timeout);
        let chunks = events.flat_map(|event| {
            let out: Vec<Result<ProviderChunk, ProviderError>> = match event {
                Err(e) => vec![Err(e)],
                Ok(event) if event.data.trim() == "[DONE]" => vec![],
                Ok(event) if event.data.trim().is_empty() => vec![],
                Ok(event) => match serde_json::from_str::<Value>(&event.data) {
                    Err(e) => vec![Err(ProviderError::Protocol(format!(
                        "bad stream event: {e}"
                    )))],
                    Ok(v) if v.get("error").is_some() => {
                        tracing::warn!(body = %event.data, "provider error inside a stream");
                        vec![Err(classify(500, &event.data, None))]
                    }
                    Ok(v) => match serde_json::from_value::<Completion>(v) {
                        Err(e) => {
                            tracing::warn!(error = %e, "unreadable stream chunk");
                            vec![Err(ProviderError::Protocol(
                                "unreadable stream chunk".into(),
                            ))]
                        }
                        Ok(chunk) => {
                            let mut out = Vec::new();
                            for choice in chunk.choices {
                                if let Some(text) = choice.delta.and_then(|d| d.content)
                                    && !text.is_empty()
                                {
                                    out.push(Ok(ProviderChunk::Delta(text)));
                                }
                                if let Some(reason) = choice.finish_reason {
                                    out.push(Ok(ProviderChunk::Finish(finish(&reason))));
                                }
                            }
                            if let Some(usage) = chunk.usage {
                                out.push(Ok(ProviderChunk::Usage(usage.into())));
                            }
                            out
                        }
                    },
                },
            };
            futures_util::stream::iter(out)
        });
        Ok(Box::pin(chunks))
    }
}
