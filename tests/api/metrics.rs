//! `GET /metrics`: behind its token, valid Prometheus text (checked by `promtool`), and
//! holding every series the operators' dashboards need after a chat, a stream, a refused
//! credential and a rate-limited request.

use colloquy::domain::Role;
use serde_json::json;

use crate::helpers::{Backend, TestApp, assert_envelope};
use crate::on_both_backends;

on_both_backends!(metrics_after_traffic_pass_promtool);

const TOKEN: &str = "metrics-secret-for-tests";

async fn scrape(app: &TestApp) -> String {
    let response = app.get("/metrics").bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    response.text().await.unwrap()
}

/// `promtool check metrics` on the text; under CI it must be installed (.ci/run does).
fn promtool(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var("CI").is_err() => {
            eprintln!("promtool not found ({e}); install the Debian package `prometheus`");
            return;
        }
        Err(e) => panic!("promtool is required under CI: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn metrics_after_traffic_pass_promtool(backend: Backend) {
    let Some(app) = TestApp::spawn_with(
        backend,
        &[
            ("COLLOQUY_METRICS__TOKEN", TOKEN),
            ("COLLOQUY_CHAT__USAGE_FLUSH_MS", "20"),
            ("COLLOQUY_RATE_LIMIT__READ__CAPACITY", "2"),
            ("COLLOQUY_RATE_LIMIT__READ__PER_MINUTE", "1"),
        ],
    )
    .await
    else {
        return;
    };
    // Without the token, or with another credential, there is nothing to see.
    assert_envelope(
        app.get("/metrics").send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let user = app.token("alice", Role::User);
    assert_envelope(
        app.get("/metrics").bearer_auth(&user).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;

    let sent = app
        .post("/v1/chat/send")
        .bearer_auth(&user)
        .json(&json!({"specialist_id": "general", "message": "Count me"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let streamed = app
        .post("/v1/chat/stream")
        .bearer_auth(&user)
        .json(&json!({"specialist_id": "general", "message": "Stream me"}))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    streamed.text().await.unwrap();
    let refused = app
        .get("/v1/conversations")
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let mut limited = false;
    for _ in 0..4 {
        let r = app
            .get("/v1/conversations")
            .bearer_auth(&user)
            .send()
            .await
            .unwrap();
        limited |= r.status() == 429;
    }
    assert!(limited, "the read bucket of 2 ran out");
    // Usage rows (and so the provider metrics) are counted when recorded.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let text = scrape(&app).await;
    promtool(&text);
    for series in [
        "colloquy_http_requests_total{route=\"/v1/chat/send\",method=\"POST\",status=\"200\"}",
        "colloquy_http_request_duration_seconds_bucket{route=\"/v1/chat/send\",method=\"POST\",le=\"0.5\"}",
        "colloquy_provider_calls_total{provider=\"mock\",model=\"mock/echo\",outcome=\"ok\"}",
        "colloquy_provider_call_duration_seconds_count{provider=\"mock\",model=\"mock/echo\"}",
        "colloquy_provider_time_to_first_token_seconds_count{provider=\"mock\",model=\"mock/echo\"}",
        "colloquy_tokens_total{model=\"mock/echo\",direction=\"input\"}",
        "colloquy_tokens_total{model=\"mock/echo\",direction=\"output\"}",
        "colloquy_cost_nanodollars_total{model=\"mock/echo\"}",
        "colloquy_rate_limited_total{class=\"read\"}",
        "colloquy_auth_failures_total{reason=\"",
        "colloquy_usage_queue_rows ",
        "colloquy_usage_flush_duration_seconds_count ",
        "colloquy_db_pool_connections{state=\"in_use\"}",
        "colloquy_sse_streams_open ",
        "colloquy_rate_limit_redis_failures_total ",
        "# HELP colloquy_http_requests_total ",
        "# TYPE colloquy_http_request_duration_seconds histogram",
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    // Route templates, never raw paths with ids in them.
    assert!(!text.contains("route=\"/v1/conversations/0"), "{text}");
}
