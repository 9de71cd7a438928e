//! Metrics in Prometheus's text format: one process-wide recorder (the `metrics` facade),
//! the names and help texts of every series Colloquy records, and the rendering behind
//! `GET /metrics`. Recording sites call `metrics::counter!` and friends with the names below.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, RwLock};

use metrics::{Counter, Histogram, Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "colloquy_http_requests_total";
pub const HTTP_DURATION: &str = "colloquy_http_request_duration_seconds";
pub const PROVIDER_CALLS: &str = "colloquy_provider_calls_total";
pub const PROVIDER_DURATION: &str = "colloquy_provider_call_duration_seconds";
pub const PROVIDER_TTFT: &str = "colloquy_provider_time_to_first_token_seconds";
pub const TOKENS: &str = "colloquy_tokens_total";
pub const COST: &str = "colloquy_cost_nanodollars_total";
pub const RATE_LIMITED: &str = "colloquy_rate_limited_total";
pub const AUTH_FAILURES: &str = "colloquy_auth_failures_total";
pub const USAGE_QUEUE: &str = "colloquy_usage_queue_rows";
pub const USAGE_FLUSH: &str = "colloquy_usage_flush_duration_seconds";
pub const DB_CONNECTIONS: &str = "colloquy_db_pool_connections";
pub const SSE_STREAMS: &str = "colloquy_sse_streams_open";
pub const RATE_LIMIT_REDIS_FAILURES: &str = "colloquy_rate_limit_redis_failures_total";
pub const BUDGET_REFUSALS: &str = "colloquy_budget_refusals_total";

/// Request and call latencies span sub-millisecond answers to minutes-long generations.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. Every app in the process (tests start
/// several) shares it: the `metrics` facade has one global recorder.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        // Refused only for empty buckets, which SECONDS_BUCKETS is not; were it refused, the
        // exporter's default (summaries) would still render.
        let recorder = match PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        {
            Ok(builder) => builder,
            Err(_) => PrometheusBuilder::new(),
        }
        .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then this one stays unused
        // and /metrics shows what it has (nothing), which is visible, not fatal.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        describe();
        handle.clone()
    })
}

/// The exposition: histograms' windows are rolled first, as the exporter's own listener
/// would.
pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template, method and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request (to the response head; streams run on), by route and method."
    );
    describe_counter!(
        PROVIDER_CALLS,
        "LLM provider calls, by provider, model and outcome (ok, or the error code)."
    );
    describe_histogram!(
        PROVIDER_DURATION,
        Unit::Seconds,
        "Duration of LLM provider calls, whole answers and streams to their end."
    );
    describe_histogram!(
        PROVIDER_TTFT,
        Unit::Seconds,
        "Time from a streamed call's start to its first token."
    );
    describe_counter!(
        TOKENS,
        "Tokens sent to (input) and received from (output) providers, by model."
    );
    describe_counter!(
        COST,
        "What provider calls cost by the configured prices, in nano-dollars (1e-9 USD), by model."
    );
    describe_counter!(
        RATE_LIMITED,
        "Requests refused by the rate limiter, by bucket class."
    );
    describe_counter!(
        BUDGET_REFUSALS,
        "Provider calls refused by a monthly budget, by reason (exceeded, ledger_unavailable)."
    );
    describe_counter!(
        AUTH_FAILURES,
        "Requests whose credentials failed, by reason."
    );
    describe_gauge!(
        USAGE_QUEUE,
        "Usage rows recorded and not yet written to the database."
    );
    describe_histogram!(
        USAGE_FLUSH,
        Unit::Seconds,
        "Time to write one batch of usage rows."
    );
    describe_gauge!(DB_CONNECTIONS, "Database pool connections, in use or idle.");
    describe_gauge!(SSE_STREAMS, "Server-sent event streams open to clients.");
    describe_counter!(
        RATE_LIMIT_REDIS_FAILURES,
        "Rate-limit checks that could not reach Redis (answered by the failure policy)."
    );
}

/// Registered handles, so the hot path increments an atomic instead of hashing a name and
/// its labels (and allocating them) on every request. Keys are bounded: route templates,
/// methods and statuses are finite, and models come from the configuration only.
type HttpHandles = HashMap<Box<str>, HashMap<(&'static str, u16), (Counter, Histogram)>>;
static HTTP: LazyLock<RwLock<HttpHandles>> = LazyLock::new(Default::default);

/// One answered HTTP request.
pub fn record_request(route: &str, method: &'static str, status: u16, seconds: f64) {
    let cached = read(&HTTP)
        .get(route)
        .and_then(|by| by.get(&(method, status)))
        .cloned();
    let (count, latency) = cached.unwrap_or_else(|| {
        let handles = (
            metrics::counter!(HTTP_REQUESTS, "route" => route.to_owned(), "method" => method, "status" => status.to_string()),
            metrics::histogram!(HTTP_DURATION, "route" => route.to_owned(), "method" => method),
        );
        write(&HTTP)
            .entry(route.into())
            .or_default()
            .insert((method, status), handles.clone());
        handles
    });
    count.increment(1);
    latency.record(seconds);
}

/// The series of one model's successful calls.
#[derive(Clone)]
struct CallHandles {
    ok: Counter,
    duration: Histogram,
    ttft: Histogram,
    input: Counter,
    output: Counter,
    cost: Counter,
}

static CALLS: LazyLock<RwLock<HashMap<Box<str>, CallHandles>>> = LazyLock::new(Default::default);

/// One provider call, as its usage row says: calls, latency, time to first token, tokens
/// and cost. Failed calls (rare) register their outcome's series as they come.
pub fn record_call(
    provider: &str,
    model: &str,
    error_code: Option<&str>,
    seconds: f64,
    ttft_seconds: Option<f64>,
    tokens: (u64, u64),
    cost_nano_usd: u64,
) {
    let cached = read(&CALLS).get(model).cloned();
    let h = cached.unwrap_or_else(|| {
        let (p, m) = (provider.to_owned(), model.to_owned());
        let handles = CallHandles {
            ok: metrics::counter!(PROVIDER_CALLS, "provider" => p.clone(), "model" => m.clone(), "outcome" => "ok"),
            duration: metrics::histogram!(PROVIDER_DURATION, "provider" => p.clone(), "model" => m.clone()),
            ttft: metrics::histogram!(PROVIDER_TTFT, "provider" => p, "model" => m.clone()),
            input: metrics::counter!(TOKENS, "model" => m.clone(), "direction" => "input"),
            output: metrics::counter!(TOKENS, "model" => m.clone(), "direction" => "output"),
            cost: metrics::counter!(COST, "model" => m),
        };
        write(&CALLS).insert(model.into(), handles.clone());
        handles
    });
    match error_code {
        None => h.ok.increment(1),
        Some(code) => metrics::counter!(PROVIDER_CALLS, "provider" => provider.to_owned(), "model" => model.to_owned(), "outcome" => code.to_owned())
            .increment(1),
    }
    h.duration.record(seconds);
    if let Some(ttft) = ttft_seconds {
        h.ttft.record(ttft);
    }
    h.input.increment(tokens.0);
    h.output.increment(tokens.1);
    h.cost.increment(cost_nano_usd);
}

/// A poisoned lock only means a panic elsewhere mid-insert; the map is still usable.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
