//! The registry: providers by name, `provider/model` routing, and everything around a call:
//! retries before anything is forwarded, a circuit breaker per provider, fallback chains,
//! usage (reported, else estimated) and cost. Every attempt is logged.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use tokio::time::Instant;

use super::anthropic::AnthropicProvider;
use super::breaker::Breaker;
use super::generation::Generation;
use super::mock::MockProvider;
use super::openai::OpenAiProvider;
use super::pricing::{Pricing, PricingError};
use super::{
    ChatRequest, ChunkStream, Provider, ProviderChunk, ProviderError, Timeouts, Usage, tokens,
};
use crate::config::{DEFAULT_OPENAI_BASE_URL, ProviderKind, ProvidersConfig};

pub use super::outcome::{CallFailure, Completion, GenerationStream, StreamEvent};

/// A successful attempt and what it was made with.
struct Won<T> {
    value: T,
    entry: Arc<Entry>,
    /// The request as sent (with the upstream model name).
    request: Arc<ChatRequest>,
    model: String,
    started: Instant,
    attempts: u32,
}

pub(super) struct Entry {
    pub(super) provider: Arc<dyn Provider>,
    pub(super) breaker: Breaker,
}

pub struct Registry {
    providers: HashMap<String, Arc<Entry>>,
    pricing: Arc<Pricing>,
    max_retries: u32,
    retry_max_wait: Duration,
    request_timeout: Duration,
    first_token_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("provider {name}: {problem}")]
    Provider { name: String, problem: String },
    #[error(transparent)]
    Pricing(#[from] PricingError),
}

/// Splits `provider/model`; the model part may itself contain slashes (`openrouter/meta/llama`).
pub fn split_model(id: &str) -> Option<(&str, &str)> {
    id.split_once('/')
        .filter(|(p, m)| !p.is_empty() && !m.is_empty())
}

impl Registry {
    pub fn from_config(config: &ProvidersConfig, config_dir: &Path) -> Result<Self, RegistryError> {
        let timeouts = Timeouts {
            connect: Duration::from_secs(config.connect_timeout_secs),
            request: Duration::from_secs(config.request_timeout_secs),
            read: Duration::from_secs(config.stream_idle_timeout_secs),
        };
        let bad = |name: &str| {
            let name = name.to_owned();
            move |problem: String| RegistryError::Provider { name, problem }
        };
        let mut providers: Vec<Arc<dyn Provider>> = vec![Arc::new(MockProvider::new(
            Duration::from_millis(config.mock_first_token_ms),
            Duration::from_millis(config.mock_token_interval_ms),
        ))];
        if !config.openai_api_key.is_empty() || config.openai_base_url != DEFAULT_OPENAI_BASE_URL {
            providers.push(Arc::new(
                OpenAiProvider::new(
                    "openai",
                    &config.openai_base_url,
                    config.openai_api_key.expose(),
                    &[],
                    timeouts,
                )
                .map_err(bad("openai"))?,
            ));
        }
        if !config.anthropic_api_key.is_empty() {
            providers.push(Arc::new(
                AnthropicProvider::new(
                    "anthropic",
                    &config.anthropic_base_url,
                    config.anthropic_api_key.expose(),
                    timeouts,
                )
                .map_err(bad("anthropic"))?,
            ));
        }
        for (name, named) in &config.named {
            let provider: Arc<dyn Provider> = match named.kind {
                ProviderKind::Openai => {
                    let headers: Vec<(String, String)> = named
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    Arc::new(
                        OpenAiProvider::new(
                            name,
                            &named.base_url,
                            named.api_key.expose(),
                            &headers,
                            timeouts,
                        )
                        .map_err(bad(name))?,
                    )
                }
                ProviderKind::Anthropic => Arc::new(
                    AnthropicProvider::new(name, &named.base_url, named.api_key.expose(), timeouts)
                        .map_err(bad(name))?,
                ),
            };
            providers.push(provider);
        }
        let breaker = || {
            Breaker::new(
                config.breaker_failures,
                Duration::from_secs(config.breaker_cooldown_secs),
            )
        };
        Ok(Self {
            providers: providers
                .into_iter()
                .map(|p| {
                    (
                        p.name().to_owned(),
                        Arc::new(Entry {
                            provider: p,
                            breaker: breaker(),
                        }),
                    )
                })
                .collect(),
            pricing: Arc::new(Pricing::load(config_dir)?),
            max_retries: config.max_retries,
            retry_max_wait: Duration::from_secs(config.retry_max_wait_secs),
            request_timeout: timeouts.request,
            first_token_timeout: Duration::from_secs(config.first_token_timeout_secs),
        })
    }

    /// Whether a `provider/model` id names a registered provider.
    pub fn knows(&self, model: &str) -> bool {
        split_model(model).is_some_and(|(p, _)| self.providers.contains_key(p))
    }

    /// Each provider's circuit: `closed`, `open` or `half_open`.
    pub fn breaker_states(&self) -> BTreeMap<String, &'static str> {
        self.providers
            .iter()
            .map(|(name, e)| (name.clone(), e.breaker.status()))
            .collect()
    }

    pub fn pricing(&self) -> &Pricing {
        &self.pricing
    }

    /// Usage counted by us for `request` sent to `model` (a full `provider/model` id) and
    /// `content` generated, priced: for calls stopped before the provider reported usage.
    pub fn estimated_cost(
        &self,
        model: &str,
        request: &ChatRequest,
        content: &str,
    ) -> (Usage, i64) {
        let upstream = split_model(model).map_or("", |(_, m)| m);
        let usage = tokens::estimate(upstream, request, content);
        (usage, self.pricing.cost_nano_usd(model, &usage))
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(self.retry_max_wait)
            .with_max_times(self.max_retries as usize)
            .build()
    }

    /// The wait before a retry: the backoff, or the provider's retry-after if longer. None
    /// when the provider asks for longer than we may wait, so the caller falls back instead.
    fn wait(&self, error: &ProviderError, backoff: Duration) -> Option<Duration> {
        match error {
            // Longer than we may wait: retrying early would only earn another 429.
            ProviderError::RateLimited {
                retry_after: Some(after),
            } if *after > self.retry_max_wait => None,
            ProviderError::RateLimited {
                retry_after: Some(after),
            } => Some((*after).max(backoff)),
            _ => Some(backoff),
        }
    }

    /// One whole answer, trying `chain` in order (a model and its fallbacks).
    pub async fn send(
        &self,
        chain: &[String],
        request: &ChatRequest,
    ) -> Result<Completion, CallFailure> {
        let timeout = self.request_timeout;
        let won = self
            .first_success(chain, request, |entry, request| async move {
                tokio::time::timeout(timeout, entry.provider.send(&request))
                    .await
                    .unwrap_or(Err(ProviderError::Timeout))
            })
            .await?;
        self.record_success(&won.entry);
        let response = won.value;
        let usage = response.usage.unwrap_or_else(|| {
            tokens::estimate(&won.request.model, &won.request, &response.content)
        });
        Ok(Completion {
            cost_nano_usd: self.pricing.cost_nano_usd(&won.model, &usage),
            content: response.content,
            usage,
            finish_reason: response.finish_reason,
            provider: won.entry.provider.name().to_owned(),
            model: won.model,
            latency: won.started.elapsed(),
            ttft: None,
            attempts: won.attempts,
        })
    }

    /// A streamed answer, trying `chain` in order. Retries and fallbacks happen only until
    /// the first token arrives: once text has been forwarded, a failure ends the stream with
    /// `Failed` and the partial text.
    pub async fn stream(
        &self,
        chain: &[String],
        request: &ChatRequest,
    ) -> Result<GenerationStream, CallFailure> {
        let won = self
            .first_success(chain, request, |entry, request| async move {
                self.open(&entry, &request).await
            })
            .await?;
        let (first, rest) = won.value;
        let (provider, model) = (won.entry.provider.name().to_owned(), won.model.clone());
        let state = Generation {
            inner: rest,
            pending: first,
            content: String::new(),
            usage: None,
            finish: None,
            entry: won.entry,
            pricing: self.pricing.clone(),
            request: won.request,
            model: won.model,
            started: won.started,
            ttft: Some(won.started.elapsed()),
            attempts: won.attempts,
            finished: false,
        };
        Ok(GenerationStream {
            provider,
            model,
            inner: Box::pin(futures_util::stream::unfold(state, Generation::next)),
        })
    }

    /// Tries each model of `chain` in turn, retrying one model on retryable errors (with
    /// backoff, honouring retry-after) and falling back on provider-side failures, until
    /// `attempt` succeeds. Each attempt passes the model's circuit breaker and is logged.
    async fn first_success<T, F, Fut>(
        &self,
        chain: &[String],
        request: &ChatRequest,
        mut attempt: F,
    ) -> Result<Won<T>, CallFailure>
    where
        // Owned arguments (two reference counts per attempt) keep the future `Send`.
        F: FnMut(Arc<Entry>, Arc<ChatRequest>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let started = Instant::now();
        let mut attempts = 0;
        let mut last = CallFailure {
            error: ProviderError::NotConfigured("no model given".into()),
            provider: None,
            model: None,
            latency: Duration::ZERO,
            attempts: 0,
        };
        for model_id in chain {
            let Some((entry, upstream)) = self.resolve(model_id, &mut last) else {
                continue;
            };
            let mut request = request.clone();
            request.model = upstream.to_owned();
            let request = Arc::new(request);
            let mut backoff = self.backoff();
            loop {
                attempts += 1;
                let attempt_started = Instant::now();
                let outcome = if entry.breaker.allow() {
                    attempt(entry.clone(), request.clone()).await
                } else {
                    Err(ProviderError::CircuitOpen(entry.provider.name().to_owned()))
                };
                log_attempt(
                    model_id,
                    attempts,
                    &outcome.as_ref().map(|_| ()),
                    attempt_started.elapsed(),
                );
                match outcome {
                    Ok(value) => {
                        return Ok(Won {
                            value,
                            entry,
                            request,
                            model: model_id.clone(),
                            started,
                            attempts,
                        });
                    }
                    Err(error) => {
                        self.record_failure(&entry, &error);
                        if error.retryable()
                            && let Some(delay) = backoff.next().and_then(|d| self.wait(&error, d))
                        {
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                        last = failure(error, &entry, model_id, started, attempts);
                        break;
                    }
                }
            }
            if !last.error.falls_back() {
                break;
            }
        }
        last.latency = started.elapsed();
        last.attempts = attempts;
        Err(last)
    }

    fn resolve<'a>(
        &self,
        model_id: &'a str,
        last: &mut CallFailure,
    ) -> Option<(Arc<Entry>, &'a str)> {
        let found =
            split_model(model_id).and_then(|(p, m)| Some((self.providers.get(p)?.clone(), m)));
        if found.is_none() {
            tracing::warn!(
                model = model_id,
                "model names no configured provider; skipping it"
            );
            last.error = ProviderError::NotConfigured(model_id.to_owned());
            last.model = Some(model_id.to_owned());
        }
        found
    }

    /// Starts a stream and waits for its first text (or its end) within the first-token
    /// timeout, so a failure here is still retryable.
    async fn open(
        &self,
        entry: &Entry,
        request: &ChatRequest,
    ) -> Result<(VecDeque<ProviderChunk>, ChunkStream), ProviderError> {
        let deadline = Instant::now() + self.first_token_timeout;
        let mut stream = tokio::time::timeout_at(deadline, entry.provider.stream(request))
            .await
            .map_err(|_| ProviderError::FirstTokenTimeout)??;
        let mut first = VecDeque::new();
        loop {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => return Err(ProviderError::FirstTokenTimeout),
                Ok(None) => return Ok((first, stream)),
                Ok(Some(Err(e))) => return Err(e),
                Ok(Some(Ok(chunk))) => {
                    let is_text =
                        matches!(chunk, ProviderChunk::Delta(_) | ProviderChunk::Finish(_));
                    first.push_back(chunk);
                    if is_text {
                        return Ok((first, stream));
                    }
                }
            }
        }
    }

    fn record_success(&self, entry: &Entry) {
        if entry.breaker.success() {
            tracing::info!(provider = entry.provider.name(), "circuit closed");
        }
    }

    fn record_failure(&self, entry: &Entry, error: &ProviderError) {
        if error.trips_breaker() {
            if entry.breaker.failure() {
                tracing::warn!(
                    provider = entry.provider.name(),
                    "circuit opened after repeated failures"
                );
            }
        } else if !matches!(error, ProviderError::CircuitOpen(_)) {
            entry.breaker.release();
        }
    }
}

fn failure(
    error: ProviderError,
    entry: &Entry,
    model: &str,
    started: Instant,
    attempts: u32,
) -> CallFailure {
    CallFailure {
        error,
        provider: Some(entry.provider.name().to_owned()),
        model: Some(model.to_owned()),
        latency: started.elapsed(),
        attempts,
    }
}

fn log_attempt(model: &str, attempt: u32, outcome: &Result<(), &ProviderError>, latency: Duration) {
    let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    match outcome {
        // A success is in usage_logs and in the access log already.
        Ok(()) => tracing::debug!(
            model,
            attempt,
            outcome = "ok",
            latency_ms,
            "provider attempt"
        ),
        Err(e) => {
            tracing::warn!(model, attempt, outcome = e.code(), error = %e, latency_ms, "provider attempt")
        }
    }
}
