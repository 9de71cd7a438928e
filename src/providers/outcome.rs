//! What a provider call ends as: a completion, a failure, or for streams the events of a
//! generation in progress. The registry makes them; chat consumes them.

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;

use super::{FinishReason, ProviderError, Usage};

/// A finished call.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub content: String,
    pub usage: Usage,
    pub finish_reason: FinishReason,
    /// The provider and full model id that answered (after any fallback).
    pub provider: String,
    pub model: String,
    pub cost_nano_usd: i64,
    pub latency: Duration,
    /// Time to the first token, for streams.
    pub ttft: Option<Duration>,
    /// Attempts made across retries and fallbacks, this one included.
    pub attempts: u32,
}

/// A call that produced no answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CallFailure {
    pub error: ProviderError,
    /// The last provider and model tried, if any.
    pub provider: Option<String>,
    pub model: Option<String>,
    pub latency: Duration,
    pub attempts: u32,
}

/// What a generation stream yields: text as it arrives, then exactly one of `Done` or
/// `Failed` (a stream that broke after text was forwarded: the partial text is kept and
/// the usage estimated).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Delta(String),
    Done(Completion),
    Failed {
        error: ProviderError,
        partial: Completion,
    },
}

/// A generation in progress, and the model that is answering (after any fallback), so a
/// caller that stops it early can still price what was generated.
pub struct GenerationStream {
    pub provider: String,
    pub model: String,
    pub(super) inner: Pin<Box<dyn Stream<Item = StreamEvent> + Send>>,
}

impl Stream for GenerationStream {
    type Item = StreamEvent;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<StreamEvent>> {
        self.inner.as_mut().poll_next(cx)
    }
}
