//! Fake LLM upstreams on 127.0.0.1:0 that replay the providers' real wire formats: JSON
//! bodies and error bodies with their status codes and headers, and SSE streams that can
//! pause, stall, send garbage or be cut mid-way. They record what they were sent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::Notify;

/// One scripted answer.
pub enum Reply {
    Json {
        status: u16,
        body: Value,
        headers: Vec<(&'static str, String)>,
    },
    Sse {
        /// Raw SSE text of each event, e.g. `data: {...}\n\n`.
        events: Vec<String>,
        /// Wait before the first event (a slow first token).
        first_delay: Duration,
        /// After the first event, wait for `Upstream::release` before the rest.
        gated: bool,
        /// End by breaking the connection instead of finishing the body.
        cut: bool,
    },
    /// Another reply, after a pause (a slow upstream).
    Slow(Duration, Box<Reply>),
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self::Json {
            status,
            body,
            headers: Vec::new(),
        }
    }

    pub fn sse(events: Vec<String>) -> Self {
        Self::Sse {
            events,
            first_delay: Duration::ZERO,
            gated: false,
            cut: false,
        }
    }
}

/// What a fake upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Clone)]
pub struct Upstream {
    pub url: String,
    script: Arc<Mutex<VecDeque<Reply>>>,
    received: Arc<Mutex<Vec<Received>>>,
    gate: Arc<Notify>,
}

impl Upstream {
    /// Serves `path` (e.g. `/v1/chat/completions` or `/v1/messages`); `url` is the base URL.
    pub async fn start(path: &str, base_suffix: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}{base_suffix}", listener.local_addr().unwrap());
        let upstream = Self {
            url,
            script: Arc::new(Mutex::new(VecDeque::new())),
            received: Arc::new(Mutex::new(Vec::new())),
            gate: Arc::new(Notify::new()),
        };
        let app = Router::new()
            .route(path, post(answer))
            .with_state(upstream.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        upstream
    }

    pub async fn openai() -> Self {
        Self::start("/v1/chat/completions", "/v1").await
    }

    pub async fn anthropic() -> Self {
        Self::start("/v1/messages", "").await
    }

    pub fn push(&self, reply: Reply) -> &Self {
        self.script.lock().unwrap().push_back(reply);
        self
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn calls(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Lets a gated stream send the rest of its events.
    pub fn release(&self) {
        self.gate.notify_one();
    }
}

async fn answer(State(up): State<Upstream>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    up.received.lock().unwrap().push(Received { headers, body });
    let mut reply = up.script.lock().unwrap().pop_front();
    while let Some(Reply::Slow(pause, inner)) = reply {
        tokio::time::sleep(pause).await;
        reply = Some(*inner);
    }
    match reply {
        Some(Reply::Slow(..)) => unreachable!("unwrapped above"),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "no scripted reply").into_response(),
        Some(Reply::Json {
            status,
            body,
            headers,
        }) => {
            let mut response =
                (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
            for (k, v) in headers {
                response.headers_mut().insert(k, v.parse().unwrap());
            }
            response
        }
        Some(Reply::Sse {
            events,
            first_delay,
            gated,
            cut,
        }) => {
            let gate = up.gate.clone();
            let stream = futures_util::stream::unfold(
                (events.into_iter().enumerate(), gate),
                move |(mut events, gate)| async move {
                    match events.next() {
                        Some((i, event)) => {
                            if i == 0 {
                                tokio::time::sleep(first_delay).await;
                            } else if i == 1 && gated {
                                gate.notified().await;
                            }
                            Some((Ok::<_, std::io::Error>(Bytes::from(event)), (events, gate)))
                        }
                        None if cut => {
                            // Let the client read what was sent before the connection drops.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            Some((Err(std::io::Error::other("connection cut")), (events, gate)))
                        }
                        None => None,
                    }
                },
            );
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(Body::from_stream(stream))
                .unwrap()
        }
    }
}

/// An OpenAI chat.completion.chunk event carrying `text`.
pub fn openai_delta(text: &str) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "system_fingerprint": "fp_x",
            "choices": [{"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}]
        })
    )
}

pub fn openai_finish(reason: &str) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason}]
        })
    )
}

pub fn openai_usage(prompt: u64, completion: u64, cached: u64) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                      "prompt_tokens_details": {"cached_tokens": cached}}
        })
    )
}

pub const OPENAI_DONE: &str = "data: [DONE]\n\n";

/// A whole OpenAI chat.completion.
pub fn openai_completion(text: &str, prompt: u64, completion: u64) -> Value {
    serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}},
        "service_tier": "default"
    })
}

/// OpenAI's error body.
pub fn openai_error(message: &str, kind: &str, code: Option<&str>) -> Value {
    serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// An Anthropic SSE event.
pub fn anthropic_event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}
