//! The floor under Colloquy's overhead: the least a proxy built on the same crates (axum's
//! server, reqwest's client, tokio) can do per request. `POST /v1/chat/send` forwards one
//! fixed OpenAI request to the upstream and answers with the upstream's body;
//! `POST /v1/chat/stream` passes the upstream's SSE bytes through. No auth, no database, no
//! logging, no parsing.
//!
//! Measured in the same run as Colloquy, it says how much of Colloquy's cost is the stack
//! itself: a target this floor cannot meet, Colloquy cannot either.

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "A minimal axum + reqwest passthrough, the floor of a proxy's cost")]
struct Args {
    /// Address to listen on; port 0 picks a free one (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The upstream's chat completions URL.
    #[arg(long)]
    upstream: String,
}

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    url: String,
    plain: Bytes,
    streamed: Bytes,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let body = |stream: bool| {
        Bytes::from(
            serde_json::json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "You are a helpful, concise assistant."},
                    {"role": "user", "content": "How do I read a balance sheet?"}
                ],
                "stream": stream,
            })
            .to_string(),
        )
    };
    let upstream = Upstream {
        client: reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .map_err(std::io::Error::other)?,
        url: args.upstream,
        plain: body(false),
        streamed: body(true),
    };
    let app = Router::new()
        .route("/v1/chat/send", post(send))
        .route("/v1/chat/stream", post(stream))
        .with_state(upstream);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}

async fn forward(up: &Upstream, body: Bytes) -> Result<reqwest::Response, Response> {
    up.client
        .post(&up.url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}

async fn send(State(up): State<Upstream>, _body: Bytes) -> Response {
    match forward(&up, up.plain.clone()).await {
        Ok(r) => match r.bytes().await {
            Ok(b) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
            Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        },
        Err(r) => r,
    }
}

async fn stream(State(up): State<Upstream>, _body: Bytes) -> Response {
    match forward(&up, up.streamed.clone()).await {
        Ok(r) => (
            [(header::CONTENT_TYPE, "text/event-stream")],
            Body::from_stream(r.bytes_stream()),
        )
            .into_response(),
        Err(r) => r,
    }
}
