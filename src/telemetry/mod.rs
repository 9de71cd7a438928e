//! Logging and tracing: JSON lines in production, readable lines in development; `RUST_LOG`
//! honoured (through config); and, when `telemetry.otlp_endpoint` is set, spans exported to
//! an OpenTelemetry collector over OTLP/HTTP. Credentials are never fields of any event we
//! emit, and the HTTP layer marks Authorization, cookies and API-key headers sensitive.

mod json;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{Config, ConfigError, LogFormat, OtlpProtocol, TelemetryConfig};

/// Held until the process ends: dropping it exports the spans still queued, then flushes
/// the queued log lines.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    _logs: Option<WorkerGuard>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(tracer) = self.tracer.take()
            && let Err(e) = tracer.shutdown()
        {
            tracing::warn!(error = %e, "could not export the last spans");
        }
    }
}

/// Installs the subscriber. Lines are written by a thread of their own, in batches, so
/// request handlers format a line but never wait on stderr (a slow or blocked log pipe
/// would otherwise stall every worker). Nothing is dropped when the queue is full: callers
/// wait instead. Spans are exported in batches by the exporter's own thread. Call outside
/// any async runtime (the exporter's blocking HTTP client starts one of its own).
pub fn init(config: &Config) -> Result<Telemetry, ConfigError> {
    let filter = EnvFilter::try_new(&config.telemetry.filter).map_err(|e| ConfigError {
        setting: "telemetry.filter (RUST_LOG)".into(),
        problem: e.to_string(),
    })?;
    let json = match config.telemetry.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => config.is_production(),
    };
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // The queue is allocated whole up front: 16k lines (512 KiB) rather than the
        // default 128k (4 MiB) keeps idle memory low and is minutes of logging at full load.
        .buffered_lines_limit(16 * 1024)
        .thread_name("colloquy-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let base = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_span_events(FmtSpan::NONE);
    // The request span's fields (request_id, trace_id, method, route) go on every line
    // logged inside it, detached generations included (they run in the request's span).
    let logs: Box<dyn Layer<Registry> + Send + Sync> = if json {
        base.fmt_fields(json::JsonFields)
            .event_format(json::JsonLines)
            .with_filter(filter)
            .boxed()
    } else {
        base.compact().with_filter(filter).boxed()
    };
    let tracer = otlp_tracer(&config.telemetry)?;
    // Spans go to the collector whatever the log filter says, at info and above.
    let traces = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("colloquy"))
            .with_filter(LevelFilter::INFO)
    });
    // A second init (tests) keeps the first subscriber; that is not an error.
    let installed = Registry::default()
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok();
    if !installed && let Some(tracer) = &tracer {
        let _ = tracer.shutdown();
    }
    Ok(Telemetry {
        tracer: tracer.filter(|_| installed),
        _logs: installed.then_some(guard),
    })
}

/// The span exporter and its batch processor, when an endpoint is configured.
fn otlp_tracer(config: &TelemetryConfig) -> Result<Option<SdkTracerProvider>, ConfigError> {
    if config.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let endpoint = format!("{}/v1/traces", config.otlp_endpoint.trim_end_matches('/'));
    let protocol = match config.otlp_protocol {
        OtlpProtocol::HttpProtobuf => Protocol::HttpBinary,
        OtlpProtocol::HttpJson => Protocol::HttpJson,
    };
    // The exporter's HTTP client is built now, and needs the process's TLS provider.
    crate::tls::ensure_crypto_provider();
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_protocol(protocol)
        .build()
        .map_err(|e| ConfigError {
            setting: "telemetry.otlp_endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)".into(),
            problem: e.to_string(),
        })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.otlp_sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    Ok(Some(provider))
}
