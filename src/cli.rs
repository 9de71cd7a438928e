//! The command line: serve (default) · migrate · check-config · token · healthcheck.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::auth::jwt::{self, TokenRequest};
use crate::config::{Config, ProcessEnv};
use crate::domain::Role;
use crate::{server, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "colloquy",
    version,
    about = "Self-hosted chat API server for LLM specialists"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the effective configuration, secrets redacted; exit non-zero naming a bad setting.
    CheckConfig,
    /// Mint a development bearer token signed with the configured secret.
    Token {
        /// The user id (JWT subject).
        #[arg(long)]
        sub: String,
        #[arg(long)]
        email: Option<String>,
        /// viewer, user or admin.
        #[arg(long, default_value = "user")]
        role: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// GET /health on the configured address; exit 0 when healthy (for Docker HEALTHCHECK).
    Healthcheck,
}

pub fn run(cli: Cli) -> ExitCode {
    let command = cli.command.unwrap_or(Command::Serve);
    // check-config loads without validating first, so it can show what it judges.
    if matches!(command, Command::CheckConfig) {
        return check_config();
    }
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    match command {
        Command::Serve => with_runtime(&config, |config| async move {
            server::run(config).await.map_err(|e| e.to_string())
        }),
        Command::Migrate => with_runtime(&config, |config| async move {
            let store = crate::store::connect(&config.database)
                .await
                .map_err(|e| e.to_string())?;
            store.migrate().await.map_err(|e| e.to_string())?;
            store.close().await;
            tracing::info!("migrations applied");
            Ok(())
        }),
        Command::Token {
            sub,
            email,
            role,
            ttl,
        } => {
            let Some(role) = Role::parse(&role) else {
                return fail(&"--role must be viewer, user or admin");
            };
            if !config.auth.hs256_enabled() {
                return fail(
                    &"HS256 tokens are off (auth.hs256, or a JWKS/PEM key is configured): get a token from your identity provider",
                );
            }
            let request = TokenRequest {
                sub: &sub,
                email: email.as_deref(),
                role,
                ttl_secs: ttl,
            };
            match jwt::mint(&config.auth, &request) {
                Ok(token) => {
                    // The token is the command's output, on stdout for `$(colloquy token ...)`.
                    let _ = writeln!(std::io::stdout(), "{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Healthcheck => healthcheck(&config),
        Command::CheckConfig => check_config(),
    }
}

fn check_config() -> ExitCode {
    let config = match Config::load_unvalidated(&ProcessEnv) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let _ = writeln!(std::io::stdout(), "{}", config.redacted_json());
    match config.validate() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn with_runtime<F, Fut>(config: &Config, body: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    // Held to the end of this function: dropping it exports the last spans and flushes the
    // queued log lines.
    let _telemetry = match telemetry::init(config) {
        Ok(guard) => guard,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    match runtime.block_on(body(config.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "colloquy stopped with an error");
            fail(&e)
        }
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "colloquy: {e}");
    ExitCode::from(2)
}

/// A plain HTTP/1.1 GET over a socket: the image needs no curl, and this needs no client crate.
fn healthcheck(config: &Config) -> ExitCode {
    let addr = match config.listen_addr() {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    let target = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    };
    let timeout = Duration::from_secs(3);
    let result = (|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&target, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        write!(
            stream,
            "GET /health HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
        )?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head)?;
        Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    })();
    // Docker reads 0 as healthy and 1 as unhealthy (2 is reserved), so failures are 1 here.
    let problem = match result {
        Ok(head) if head.starts_with("HTTP/1.1 200") => return ExitCode::SUCCESS,
        Ok(head) => format!("unhealthy: {}", head.lines().next().unwrap_or("")),
        Err(e) => format!("cannot reach {target}: {e}"),
    };
    let _ = writeln!(std::io::stderr(), "colloquy: {problem}");
    ExitCode::FAILURE
}
