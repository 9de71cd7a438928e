//! LLM providers behind one trait: OpenAI-compatible servers, Anthropic, and a built-in mock.
//! The registry adds what every call needs: model routing, retries before anything is
//! forwarded, a circuit breaker per provider, fallbacks, exact or estimated usage, cost.

pub mod anthropic;
pub mod breaker;
mod generation;
pub mod mock;
pub mod openai;
pub mod outcome;
pub mod pricing;
pub mod registry;
mod sse;
pub mod tokens;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::Stream;

pub use registry::{CallFailure, Completion, Registry, StreamEvent};

/// Who said a message, as providers see it (the system prompt travels separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    User,
    Assistant,
}

/// A piece of a message: text, or an image for models that accept images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Image { mime: String, base64: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub speaker: Speaker,
    pub parts: Vec<Part>,
}

impl ChatMessage {
    pub fn text(speaker: Speaker, text: impl Into<String>) -> Self {
        Self {
            speaker,
            parts: vec![Part::Text(text.into())],
        }
    }
}

/// A provider-neutral chat request. `model` is the upstream name (after `provider/`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub system: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    /// The end user's hashed id, passed on for the provider's abuse monitoring.
    pub user: Option<String>,
}

impl ChatRequest {
    /// Every text of the prompt, for token estimates.
    pub fn prompt_text(&self) -> String {
        let mut out = self.system.clone().unwrap_or_default();
        for m in &self.messages {
            for p in &m.parts {
                if let Part::Text(t) = p {
                    out.push('\n');
                    out.push_str(t);
                }
            }
        }
        out
    }
}

/// Tokens of one call. `input_tokens` counts every prompt token, cached ones included;
/// `cached_input_tokens` is the part read from the provider's prompt cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    /// Counted by us (tokenizer or approximation) because the provider said nothing.
    pub estimated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ContentFilter,
    ToolCalls,
    /// Ended early by us (a bound, a shutdown) or by a broken stream.
    Cut,
    Other(String),
}

impl FinishReason {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ContentFilter => "content_filter",
            Self::ToolCalls => "tool_calls",
            Self::Cut => "cut",
            Self::Other(s) => s,
        }
    }
}

/// A whole answer from one provider call.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub content: String,
    pub usage: Option<Usage>,
    pub finish_reason: FinishReason,
}

/// What a provider's stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderChunk {
    Delta(String),
    Usage(Usage),
    Finish(FinishReason),
}

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<ProviderChunk, ProviderError>> + Send>>;

/// Why a call failed, mapped to our error codes; upstream bodies go to logs only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("the provider sent no first token in time")]
    FirstTokenTimeout,
    #[error("the provider is rate limiting us")]
    RateLimited { retry_after: Option<Duration> },
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    #[error("the circuit for provider {0} is open")]
    CircuitOpen(String),
    #[error("the prompt is longer than the model's context")]
    ContextLength,
    #[error("the provider refused the content")]
    ContentFiltered,
    #[error("the provider refused our credentials")]
    Auth,
    #[error("the provider refused the request: {0}")]
    BadRequest(String),
    #[error("the provider's answer was not understood: {0}")]
    Protocol(String),
    #[error("provider not configured: {0}")]
    NotConfigured(String),
}

impl ProviderError {
    /// The stable code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout | Self::FirstTokenTimeout => "upstream_timeout",
            Self::RateLimited { .. } => "upstream_rate_limited",
            Self::Unavailable(_) | Self::CircuitOpen(_) => "upstream_unavailable",
            Self::ContextLength => "context_length_exceeded",
            Self::ContentFiltered => "content_filtered",
            Self::Auth | Self::BadRequest(_) | Self::Protocol(_) => "upstream_error",
            Self::NotConfigured(_) => "provider_not_configured",
        }
    }

    /// Worth another attempt at the same model (nothing was forwarded yet).
    pub fn retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unavailable(_))
    }

    /// Worth trying the next model of a fallback chain.
    pub fn falls_back(&self) -> bool {
        !matches!(
            self,
            Self::ContextLength | Self::ContentFiltered | Self::BadRequest(_)
        )
    }

    /// Counts against the provider's circuit breaker.
    pub fn trips_breaker(&self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::FirstTokenTimeout | Self::Unavailable(_) | Self::Protocol(_)
        )
    }
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// The provider's name, the prefix of its model ids (`openai`, `anthropic`, `mock`...).
    fn name(&self) -> &str;

    async fn send(&self, request: &ChatRequest) -> Result<ChatResponse, ProviderError>;

    /// Starts a streamed answer; an error here means nothing was received.
    async fn stream(&self, request: &ChatRequest) -> Result<ChunkStream, ProviderError>;
}

/// Timeouts shared by the HTTP providers.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    /// A whole non-streamed call.
    pub request: Duration,
    /// Silence allowed between two chunks of a stream.
    pub read: Duration,
}
