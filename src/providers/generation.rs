//! A stream being forwarded: text as it arrives, then exactly one `Done` or `Failed`, with
//! the usage reported or estimated, the cost, and the breaker told how it went.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use super::pricing::Pricing;
use super::registry::{Completion, Entry, StreamEvent};
use super::{ChatRequest, ChunkStream, FinishReason, ProviderChunk, ProviderError, Usage, tokens};

/// The state of a stream being forwarded.
pub(super) struct Generation {
    pub(super) inner: ChunkStream,
    pub(super) pending: VecDeque<ProviderChunk>,
    pub(super) content: String,
    pub(super) usage: Option<Usage>,
    pub(super) finish: Option<FinishReason>,
    pub(super) entry: Arc<Entry>,
    pub(super) pricing: Arc<Pricing>,
    pub(super) request: std::sync::Arc<ChatRequest>,
    pub(super) model: String,
    pub(super) started: Instant,
    pub(super) ttft: Option<Duration>,
    pub(super) attempts: u32,
    pub(super) finished: bool,
}

impl Generation {
    pub(super) async fn next(mut self) -> Option<(StreamEvent, Self)> {
        if self.finished {
            return None;
        }
        loop {
            let chunk = match self.pending.pop_front() {
                Some(c) => Some(Ok(c)),
                None => self.inner.next().await,
            };
            match chunk {
                Some(Ok(ProviderChunk::Delta(text))) => {
                    self.content.push_str(&text);
                    return Some((StreamEvent::Delta(text), self));
                }
                Some(Ok(ProviderChunk::Usage(u))) => self.usage = Some(u),
                Some(Ok(ProviderChunk::Finish(f))) => self.finish = Some(f),
                Some(Err(error)) => {
                    if error.trips_breaker() && self.entry.breaker.failure() {
                        tracing::warn!(
                            provider = self.entry.provider.name(),
                            "circuit opened after repeated failures"
                        );
                    }
                    tracing::warn!(model = %self.model, error = %error, forwarded_bytes = self.content.len(), "stream broke after text was forwarded");
                    self.finished = true;
                    let partial = self.completion(FinishReason::Cut);
                    return Some((StreamEvent::Failed { error, partial }, self));
                }
                None => {
                    self.finished = true;
                    return Some(match self.finish.take() {
                        Some(finish) => {
                            if self.entry.breaker.success() {
                                tracing::info!(
                                    provider = self.entry.provider.name(),
                                    "circuit closed"
                                );
                            }
                            let done = self.completion(finish);
                            (StreamEvent::Done(done), self)
                        }
                        // Ended without saying why: the connection was cut.
                        None => {
                            let error = ProviderError::Unavailable(
                                "stream ended before it finished".into(),
                            );
                            if self.entry.breaker.failure() {
                                tracing::warn!(
                                    provider = self.entry.provider.name(),
                                    "circuit opened after repeated failures"
                                );
                            }
                            let partial = self.completion(FinishReason::Cut);
                            (StreamEvent::Failed { error, partial }, self)
                        }
                    });
                }
            }
        }
    }

    fn completion(&mut self, finish_reason: FinishReason) -> Completion {
        // A cut stream's reported usage (if any came) is incomplete: estimate instead.
        let usage = match (self.usage, &finish_reason) {
            (Some(u), f) if *f != FinishReason::Cut => u,
            _ => tokens::estimate(&self.request.model, &self.request, &self.content),
        };
        Completion {
            content: std::mem::take(&mut self.content),
            cost_nano_usd: self.pricing.cost_nano_usd(&self.model, &usage),
            usage,
            finish_reason,
            provider: self.entry.provider.name().to_owned(),
            model: self.model.clone(),
            latency: self.started.elapsed(),
            ttft: self.ttft,
            attempts: self.attempts,
        }
    }
}
