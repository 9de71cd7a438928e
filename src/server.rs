//! Serving: connect the store, migrate, bind, serve until a signal, then shut down
//! gracefully (stop accepting, let in-flight requests finish within the grace period,
//! drain background tasks, close the pool).

use std::future::Future;
use std::net::SocketAddr;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError, redact_url};
use crate::http::build_app;
use crate::state::AppState;
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Connects to the database and applies migrations when configured.
pub async fn open_store(config: &Config) -> Result<std::sync::Arc<dyn store::Store>, ServeError> {
    let store = store::connect(&config.database).await?;
    if config.database.migrate_on_start {
        store.migrate().await?;
    }
    Ok(store)
}

/// `colloquy serve`: runs until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), ServeError> {
    let addr = config.listen_addr()?;
    tracing::info!(
        environment = %config.environment,
        database = %redact_url(&config.database.url),
        "starting colloquy {}",
        env!("CARGO_PKG_VERSION")
    );
    let store = open_store(&config).await?;
    let state = AppState::new(config, store)?;
    let listener = bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "listening");
    // The address a browser can open: a wildcard bind is reached on loopback.
    let host = if local.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port())
    } else {
        local
    };
    tracing::info!("chat in your browser: http://{host}/");
    if !state.config.is_production() {
        tracing::info!(
            "development mode: get a bearer token with `colloquy token --sub you --role user`, or press \"Use a development token\" on the page"
        );
    }
    if let Some(addr) = state.config.metrics_listen()? {
        let metrics = bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
        tracing::info!(address = %metrics.local_addr()?, "metrics listening");
        let stop = state.background.shutdown_signal();
        let app = crate::http::metrics_app(state.clone());
        state.background.spawn(async move {
            let served = axum::serve(metrics, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    serve(listener, state, shutdown_signal()).await
}

/// The accept queue: connections the kernel completes while every worker is busy wait here
/// instead of being refused. tokio's default is 1,024, too few for a burst of thousands of
/// clients (the kernel caps it at `net.core.somaxconn`).
const ACCEPT_BACKLOG: u32 = 8192;

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A restarted server can bind at once while the old one's connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Serves on `listener` until `shutdown` resolves, then drains. Tests call this directly.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    state.start().await;
    let app = build_app(state.clone());
    let stop = CancellationToken::new();
    // Small writes (SSE events, short JSON answers) go out at once: with Nagle's algorithm
    // on, an event written while the previous one awaits its ACK waits up to 40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    });
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop.clone().cancelled_owned());
    let mut server = tokio::spawn(async move { server.await });

    tokio::select! {
        result = &mut server => {
            // The server stopped by itself: an accept error worth reporting.
            return result.map_err(|e| std::io::Error::other(e.to_string()))?.map_err(ServeError::from);
        }
        () = shutdown => {}
    }
    let grace = state.config.shutdown_grace();
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: no new connections, finishing in-flight requests"
    );
    stop.cancel();
    let started = tokio::time::Instant::now();
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => {
            result.map_err(|e| std::io::Error::other(e.to_string()))??;
        }
        Err(_) => {
            tracing::warn!("grace period over; closing the connections still open");
            server.abort();
        }
    }
    // Generations get what is left of the grace period, then are cut (and still stored and
    // accounted); then every queued usage row is written; then background tasks; then the
    // pool. Each step is bounded, so a hung request cannot hold the process forever.
    let left = |floor: u64| {
        grace
            .saturating_sub(started.elapsed())
            .max(std::time::Duration::from_secs(floor))
    };
    state.chat.shutdown(left(1)).await;
    if !state.background.shutdown(left(1)).await {
        tracing::warn!(
            running = state.background.running(),
            "background tasks still running at the deadline"
        );
    }
    if tokio::time::timeout(left(1), state.store.close())
        .await
        .is_err()
    {
        tracing::warn!("database connections still in use at the deadline");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (what Docker and Kubernetes send) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
