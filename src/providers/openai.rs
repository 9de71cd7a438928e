//! OpenAI-compatible Chat Completions (OpenAI, Azure OpenAI v1, Ollama, vLLM, llama.cpp,
//! LiteLLM, OpenRouter, Groq...): plain and streamed, streams always asking for usage.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sse;
use super::{
    ChatRequest, ChatResponse, ChunkStream, FinishReason, Part, Provider, ProviderChunk,
    ProviderError, Speaker, Timeouts, Usage,
};

pub struct OpenAiProvider {
    name: String,
    completions_url: reqwest::Url,
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
            // A provider API does not redirect; not following saves a URL parse per call.
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .connect_timeout(timeouts.connect)
            .build()
            .map_err(|e| e.to_string())?;
        // Parsed once: reqwest would parse a string URL again on every call.
        let completions_url = reqwest::Url::parse(&format!(
            "{}/chat/completions",
            base_url.trim_end_matches('/')
        ))
        .map_err(|e| format!("base URL {base_url}: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            completions_url,
            client,
            read_timeout: timeouts.read,
            request_timeout: timeouts.request,
        })
    }

    fn body<'a>(&self, request: &'a ChatRequest, stream: bool) -> WireRequest<'a> {
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        if let Some(system) = &request.system {
            messages.push(OutMessage {
                role: "system",
                content: OutContent::Text(system),
            });
        }
        for m in &request.messages {
            let role = match m.speaker {
                Speaker::User => "user",
                Speaker::Assistant => "assistant",
            };
            let content = match m.parts.as_slice() {
                [Part::Text(t)] => OutContent::Text(t),
                parts => OutContent::Parts(
                    parts
                        .iter()
                        .map(|p| match p {
                            Part::Text(t) => OutPart::Text { text: t },
                            Part::Image { mime, base64 } => OutPart::ImageUrl {
                                image_url: ImageUrl {
                                    url: format!("data:{mime};base64,{base64}"),
                                },
                            },
                        })
                        .collect(),
                ),
            };
            messages.push(OutMessage { role, content });
        }
        // OpenAI's reasoning models refuse `max_tokens`; everything compatible takes it.
        let m = request.model.to_ascii_lowercase();
        let reasoning = ["o1", "o3", "o4", "gpt-5"].iter().any(|p| m.starts_with(p));
        WireRequest {
            model: &request.model,
            messages,
            stream,
            temperature: request.temperature,
            max_tokens: request.max_tokens.filter(|_| !reasoning),
            max_completion_tokens: request.max_tokens.filter(|_| reasoning),
            stop: &request.stop,
            user: request.user.as_deref(),
            // Without this, streamed calls report no usage at all.
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }

    async fn post(
        &self,
        body: &WireRequest<'_>,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut call = self.client.post(self.completions_url.clone()).json(body);
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

/// The request body, serialized straight from borrowed parts of the `ChatRequest`.
#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<OutMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: OutContent<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutContent<'a> {
    Text(&'a str),
    Parts(Vec<OutPart<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutPart<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: ImageUrl },
}

#[derive(Serialize)]
struct ImageUrl {
    url: String,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
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

/// A whole answer, or one chunk of a stream.
#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
    /// There when a provider reports a failure in the middle of a stream.
    error: Option<serde::de::IgnoredAny>,
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
                // One typed parse per chunk (a chunk per token); the error path alone looks
                // closer at what arrived.
                Ok(event) => match serde_json::from_str::<Completion>(&event.data) {
                    Ok(chunk) if chunk.error.is_some() => {
                        tracing::warn!(body = %event.data, "provider error inside a stream");
                        vec![Err(classify(500, &event.data, None))]
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
                    Err(e) if serde_json::from_str::<Value>(&event.data).is_err() => {
                        vec![Err(ProviderError::Protocol(format!(
                            "bad stream event: {e}"
                        )))]
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable stream chunk");
                        vec![Err(ProviderError::Protocol(
                            "unreadable stream chunk".into(),
                        ))]
                    }
                },
            };
            futures_util::stream::iter(out)
        });
        Ok(Box::pin(chunks))
    }
}
