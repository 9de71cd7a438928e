//! Logging: JSON lines in production, readable lines in development; `RUST_LOG` honoured
//! (through config). Credentials are never fields of any event we emit, and the HTTP layer
//! marks Authorization, cookies and API-key headers sensitive.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{Config, ConfigError, LogFormat};

/// Installs the subscriber. Lines are written by a thread of their own, in batches, so
/// request handlers format a line but never wait on stderr (a slow or blocked log pipe
/// would otherwise stall every worker). Keep the guard until the process ends; dropping it
/// flushes what is queued. Nothing is dropped when the queue is full: callers wait instead.
pub fn init(config: &Config) -> Result<Option<WorkerGuard>, ConfigError> {
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_span_events(FmtSpan::NONE);
    // A second init (tests) keeps the first subscriber; that is not an error.
    let installed = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
    Ok(installed.is_ok().then_some(guard))
}
