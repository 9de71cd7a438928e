//! A fast OpenAI-compatible upstream for benchmarks: `POST /v1/chat/completions`, plain and
//! streamed, with no delay by default and a configurable first-token delay and token pace.
//!
//! It does as little as a server can while still speaking the real wire format (the same
//! JSON and SSE framing as OpenAI, usage included), so that hitting it directly is the
//! baseline Colloquy's overhead is measured against.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use clap::Parser;
use futures_util::stream;
use serde::Deserialize;

#[derive(Parser, Debug)]
#[command(about = "OpenAI-compatible mock upstream for Colloquy's benchmarks")]
struct Args {
    /// Address to listen on; port 0 picks a free one (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Tokens in every answer.
    #[arg(long, default_value_t = 16)]
    tokens: usize,
    /// Delay before the first token (streams) or the whole answer (plain), milliseconds.
    #[arg(long, default_value_t = 0)]
    first_token_ms: u64,
    /// Delay between two tokens of a stream, milliseconds.
    #[arg(long, default_value_t = 0)]
    token_ms: u64,
}

/// Only what decides the answer's shape; everything else in the body is skipped unread.
#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Every answer is the same, so its bytes are made once.
struct Canned {
    plain: Bytes,
    token_chunk: Bytes,
    finish_chunk: Bytes,
    usage_chunk: Bytes,
    done: Bytes,
    tokens: usize,
    first_token: Duration,
    pace: Duration,
}

#[derive(Clone, Copy)]
enum Step {
    Token(usize),
    Finish,
    Usage,
    Done,
    End,
}

const PROMPT_TOKENS: usize = 24;

impl Canned {
    fn new(args: &Args) -> Self {
        let content = "token ".repeat(args.tokens);
        let usage = serde_json::json!({
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": args.tokens,
            "total_tokens": PROMPT_TOKENS + args.tokens,
        });
        let plain = serde_json::json!({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000,
            "model": "bench-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": usage,
        });
        let chunk = |choices: serde_json::Value, usage: Option<&serde_json::Value>| {
            let mut c = serde_json::json!({
                "id": "chatcmpl-bench", "object": "chat.completion.chunk",
                "created": 1_700_000_000, "model": "bench-model", "choices": choices,
            });
            if let Some(u) = usage {
                c["usage"] = u.clone();
            }
            Bytes::from(format!("data: {c}\n\n"))
        };
        Self {
            plain: Bytes::from(plain.to_string()),
            token_chunk: chunk(
                serde_json::json!([{"index": 0, "delta": {"content": "token "}, "finish_reason": null}]),
                None,
            ),
            finish_chunk: chunk(
                serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
                None,
            ),
            usage_chunk: chunk(serde_json::json!([]), Some(&usage)),
            done: Bytes::from_static(b"data: [DONE]\n\n"),
            tokens: args.tokens,
            first_token: Duration::from_millis(args.first_token_ms),
            pace: Duration::from_millis(args.token_ms),
        }
    }
}

async fn completions(State(canned): State<Arc<Canned>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Request>(&body) else {
        let error = r#"{"error":{"message":"invalid JSON body","type":"invalid_request_error","param":null,"code":null}}"#;
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            error,
        )
            .into_response();
    };
    if !request.stream {
        if !canned.first_token.is_zero() {
            tokio::time::sleep(canned.first_token).await;
        }
        return (
            [(header::CONTENT_TYPE, "application/json")],
            canned.plain.clone(),
        )
            .into_response();
    }
    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    // Tokens (after the first-token delay, then at the pace), the finish chunk, the usage
    // chunk when asked for, and [DONE].
    let events = stream::unfold(Step::Token(0), move |step| {
        let canned = canned.clone();
        async move {
            let (bytes, next) = match step {
                Step::Token(n) => {
                    let wait = if n == 0 {
                        canned.first_token
                    } else {
                        canned.pace
                    };
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    let next = if n + 1 < canned.tokens {
                        Step::Token(n + 1)
                    } else {
                        Step::Finish
                    };
                    (canned.token_chunk.clone(), next)
                }
                Step::Finish => {
                    let next = if include_usage {
                        Step::Usage
                    } else {
                        Step::Done
                    };
                    (canned.finish_chunk.clone(), next)
                }
                Step::Usage => (canned.usage_chunk.clone(), Step::Done),
                Step::Done => (canned.done.clone(), Step::End),
                Step::End => return None,
            };
            Some((Ok::<_, std::convert::Infallible>(bytes), next))
        }
    });
    let mut response = Response::new(Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let canned = Arc::new(Canned::new(&args));
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(canned);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    // Like any real upstream: each token leaves at once.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
