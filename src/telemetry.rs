//! Logging: JSON lines in production, readable lines in development; `RUST_LOG` honoured
//! (through config). Credentials are never fields of any event we emit, and the HTTP layer
//! marks Authorization, cookies and API-key headers sensitive.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{Config, ConfigError, LogFormat};

pub fn init(config: &Config) -> Result<(), ConfigError> {
    let filter = EnvFilter::try_new(&config.telemetry.filter).map_err(|e| ConfigError {
        setting: "telemetry.filter (RUST_LOG)".into(),
        problem: e.to_string(),
    })?;
    let json = match config.telemetry.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => config.is_production(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);
    // A second init (tests) keeps the first subscriber; that is not an error.
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
    Ok(())
}
