//! Providers against fake upstreams speaking each API's wire format: answers, streams,
//! usage present and absent, error bodies, retries (one charge), fallbacks, cut and broken
//! streams, slow first tokens and the circuit breaker.

use std::time::Duration;

use colloquy::providers::{
    ChatMessage, ChatRequest, FinishReason, ProviderError, Registry, Speaker, StreamEvent,
};
use futures_util::StreamExt;
use serde_json::json;

use crate::fakes::{self, Reply, Upstream};
use crate::helpers::test_config;

fn registry(overrides: &[(&str, &str)]) -> Registry {
    let mut env = vec![
        ("COLLOQUY_PROVIDERS__MAX_RETRIES", "1"),
        ("COLLOQUY_PROVIDERS__RETRY_MAX_WAIT_SECS", "2"),
        ("COLLOQUY_PROVIDERS__FIRST_TOKEN_TIMEOUT_SECS", "1"),
        ("COLLOQUY_PROVIDERS__STREAM_IDLE_TIMEOUT_SECS", "5"),
        ("COLLOQUY_PROVIDERS__MOCK_FIRST_TOKEN_MS", "0"),
        ("COLLOQUY_PROVIDERS__MOCK_TOKEN_INTERVAL_MS", "0"),
    ];
    env.extend_from_slice(overrides);
    let config = test_config("sqlite://unused.db", &env);
    Registry::from_config(&config.providers, &config.config_dir).expect("registry")
}

fn openai(up: &Upstream) -> Registry {
    registry(&[
        ("OPENAI_BASE_URL", up.url.as_str()),
        ("OPENAI_API_KEY", "sk-test-secret"),
    ])
}

fn anthropic(up: &Upstream) -> Registry {
    registry(&[
        ("ANTHROPIC_BASE_URL", up.url.as_str()),
        ("ANTHROPIC_API_KEY", "sk-ant-test"),
    ])
}

fn request() -> ChatRequest {
    ChatRequest {
        system: Some("Be brief.".into()),
        messages: vec![
            ChatMessage::text(Speaker::User, "Hello"),
            ChatMessage::text(Speaker::Assistant, "Hi."),
            ChatMessage::text(Speaker::User, "What is 2+2?"),
        ],
        temperature: Some(0.2),
        max_tokens: Some(64),
        user: Some("user-hash".into()),
        ..ChatRequest::default()
    }
}

fn chain(models: &[&str]) -> Vec<String> {
    models.iter().map(|m| (*m).to_owned()).collect()
}

async fn collect(
    mut stream: colloquy::providers::registry::GenerationStream,
) -> (Vec<String>, StreamEvent) {
    let mut deltas = Vec::new();
    loop {
        match stream.next().await.expect("a final event") {
            StreamEvent::Delta(d) => deltas.push(d),
            last => {
                assert!(
                    stream.next().await.is_none(),
                    "nothing after the final event"
                );
                return (deltas, last);
            }
        }
    }
}

#[tokio::test]
async fn openai_send_maps_request_response_usage_and_cost() {
    let up = Upstream::openai().await;
    up.push(Reply::json(200, fakes::openai_completion("4", 1000, 10)));
    let done = openai(&up)
        .send(&chain(&["openai/gpt-4o-mini"]), &request())
        .await
        .unwrap();
    assert_eq!(done.content, "4");
    assert_eq!(
        (
            done.usage.input_tokens,
            done.usage.output_tokens,
            done.usage.estimated
        ),
        (1000, 10, false)
    );
    // 1000 × $0.15/M + 10 × $0.60/M = $0.000156
    assert_eq!(done.cost_nano_usd, 156_000);
    assert_eq!(
        (done.provider.as_str(), done.model.as_str(), done.attempts),
        ("openai", "openai/gpt-4o-mini", 1)
    );
    let sent = &up.received()[0];
    assert_eq!(sent.headers["authorization"], "Bearer sk-test-secret");
    assert_eq!(
        sent.body["model"], "gpt-4o-mini",
        "provider prefix stripped"
    );
    assert_eq!(
        sent.body["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent.body["messages"][3]["content"], "What is 2+2?");
    assert_eq!(sent.body["max_tokens"], 64);
    assert_eq!(sent.body["user"], "user-hash");
    assert_eq!(sent.body["stream"], false);
}

#[tokio::test]
async fn openai_stream_is_incremental_and_asks_for_usage() {
    let up = Upstream::openai().await;
    up.push(Reply::Sse {
        events: vec![
            fakes::openai_delta("Two"),
            fakes::openai_delta(" plus two"),
            fakes::openai_delta(" is four."),
            fakes::openai_finish("stop"),
            fakes::openai_usage(1200, 6, 1024),
            fakes::OPENAI_DONE.to_owned(),
        ],
        first_delay: Duration::ZERO,
        gated: true,
        cut: false,
    });
    let registry = openai(&up);
    let mut stream = registry
        .stream(&chain(&["openai/gpt-4o-mini"]), &request())
        .await
        .unwrap();
    // The first delta is here while the upstream still holds the rest.
    assert_eq!(stream.next().await, Some(StreamEvent::Delta("Two".into())));
    up.release();
    let (deltas, last) = collect(stream).await;
    assert_eq!(deltas, [" plus two", " is four."]);
    let StreamEvent::Done(done) = last else {
        panic!("{last:?}")
    };
    assert_eq!(done.content, "Two plus two is four.");
    assert_eq!(done.finish_reason, FinishReason::Stop);
    assert_eq!(
        (
            done.usage.input_tokens,
            done.usage.cached_input_tokens,
            done.usage.output_tokens
        ),
        (1200, 1024, 6)
    );
    assert!(!done.usage.estimated);
    assert!(done.ttft.is_some());
    let sent = &up.received()[0].body;
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn missing_usage_is_estimated_with_the_tokenizer() {
    let up = Upstream::openai().await;
    up.push(Reply::sse(vec![
        fakes::openai_delta("hello world"),
        fakes::openai_finish("stop"),
        fakes::OPENAI_DONE.into(),
    ]));
    let mut no_usage = fakes::openai_completion("hello world", 0, 0);
    no_usage.as_object_mut().unwrap().remove("usage");
    up.push(Reply::json(200, no_usage));
    let registry = openai(&up);
    let (_, last) = collect(
        registry
            .stream(&chain(&["openai/gpt-4o-mini"]), &request())
            .await
            .unwrap(),
    )
    .await;
    let StreamEvent::Done(streamed) = last else {
        panic!("{last:?}")
    };
    let sent = registry
        .send(&chain(&["openai/gpt-4o-mini"]), &request())
        .await
        .unwrap();
    for usage in [streamed.usage, sent.usage] {
        assert!(usage.estimated);
        assert_eq!(
            usage.output_tokens, 2,
            "tiktoken: `hello world` is 2 tokens"
        );
        assert!(usage.input_tokens > 5);
    }
}

#[tokio::test]
async fn error_bodies_map_to_codes_without_retrying_client_errors() {
    let up = Upstream::openai().await;
    let cases = [
        (
            400,
            fakes::openai_error(
                "This model's maximum context length is 128000 tokens.",
                "invalid_request_error",
                Some("context_length_exceeded"),
            ),
            "context_length_exceeded",
        ),
        (
            401,
            fakes::openai_error(
                "Incorrect API key provided: sk-test-***.",
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            "upstream_error",
        ),
        (
            400,
            fakes::openai_error(
                "Your request was rejected by our safety system.",
                "invalid_request_error",
                Some("content_policy_violation"),
            ),
            "content_filtered",
        ),
        (
            404,
            fakes::openai_error(
                "The model `gpt-9` does not exist",
                "invalid_request_error",
                Some("model_not_found"),
            ),
            "upstream_error",
        ),
    ];
    let registry = openai(&up);
    for (status, body, code) in cases {
        let before = up.calls();
        up.push(Reply::json(status, body));
        let failure = registry
            .send(&chain(&["openai/gpt-4o-mini"]), &request())
            .await
            .unwrap_err();
        assert_eq!(failure.error.code(), code, "{status}");
        assert_eq!(up.calls() - before, 1, "{code}: no retry");
        // The upstream's message (it may quote a key) is not part of the error we surface.
        assert!(
            !failure.error.to_string().contains("sk-test"),
            "{}",
            failure.error
        );
    }
}

#[tokio::test]
async fn rate_limited_then_success_honours_retry_after() {
    let up = Upstream::openai().await;
    up.push(Reply::Json {
        status: 429,
        body: fakes::openai_error(
            "Rate limit reached for gpt-4o-mini",
            "requests",
            Some("rate_limit_exceeded"),
        ),
        headers: vec![("retry-after", "1".into())],
    });
    up.push(Reply::json(200, fakes::openai_completion("ok", 10, 1)));
    let started = std::time::Instant::now();
    let done = openai(&up)
        .send(&chain(&["openai/gpt-4o-mini"]), &request())
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for retry-after"
    );
    assert_eq!(
        (done.content.as_str(), done.attempts, up.calls()),
        ("ok", 2, 2)
    );
}

#[tokio::test]
async fn server_error_then_success_is_one_retry_and_one_charge() {
    let up = Upstream::openai().await;
    up.push(Reply::json(
        500,
        fakes::openai_error(
            "The server had an error while processing your request.",
            "server_error",
            None,
        ),
    ));
    up.push(Reply::json(200, fakes::openai_completion("fine", 100, 5)));
    let done = openai(&up)
        .send(&chain(&["openai/gpt-4o-mini"]), &request())
        .await
        .unwrap();
    assert_eq!(up.calls(), 2);
    assert_eq!(done.attempts, 2);
    // Only the successful attempt is accounted.
    assert_eq!(
        (done.usage.input_tokens, done.usage.output_tokens),
        (100, 5)
    );
}

#[tokio::test]
async fn connection_refused_falls_back_to_the_next_model() {
    let up = Upstream::openai().await;
    up.push(Reply::json(
        200,
        fakes::openai_completion("from the fallback", 10, 3),
    ));
    let registry = registry(&[
        ("OPENAI_BASE_URL", up.url.as_str()),
        ("COLLOQUY_PROVIDERS__NAMED__DEAD__KIND", "openai"),
        (
            "COLLOQUY_PROVIDERS__NAMED__DEAD__BASE_URL",
            "http://127.0.0.1:1/v1",
        ),
    ]);
    let done = registry
        .send(
            &chain(&["dead/some-model", "openai/gpt-4o-mini"]),
            &request(),
        )
        .await
        .unwrap();
    assert_eq!(done.content, "from the fallback");
    assert_eq!(done.model, "openai/gpt-4o-mini");
    assert_eq!(
        done.attempts, 3,
        "two tries at the dead one (one retry), then the fallback"
    );
    // The stream path falls back the same way.
    up.push(Reply::sse(vec![
        fakes::openai_delta("streamed"),
        fakes::openai_finish("stop"),
        fakes::OPENAI_DONE.into(),
    ]));
    let (deltas, last) = collect(
        registry
            .stream(
                &chain(&["dead/some-model", "openai/gpt-4o-mini"]),
                &request(),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(deltas, ["streamed"]);
    assert!(matches!(last, StreamEvent::Done(d) if d.model == "openai/gpt-4o-mini"));
    // A model without a provider is skipped, and alone it is provider_not_configured.
    let failure = registry
        .send(&chain(&["nowhere/x"]), &request())
        .await
        .unwrap_err();
    assert_eq!(failure.error.code(), "provider_not_configured");
}

#[tokio::test]
async fn a_stream_cut_midway_keeps_the_partial_text_and_estimates_usage() {
    let up = Upstream::openai().await;
    up.push(Reply::Sse {
        events: vec![fakes::openai_delta("Hello"), fakes::openai_delta(" wor")],
        first_delay: Duration::ZERO,
        gated: false,
        cut: true,
    });
    let (deltas, last) = collect(
        openai(&up)
            .stream(&chain(&["openai/gpt-4o-mini"]), &request())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(deltas, ["Hello", " wor"]);
    let StreamEvent::Failed { error, partial } = last else {
        panic!("{last:?}")
    };
    assert_eq!(error.code(), "upstream_unavailable");
    assert_eq!(partial.content, "Hello wor");
    assert_eq!(partial.finish_reason, FinishReason::Cut);
    assert!(partial.usage.estimated && partial.usage.output_tokens > 0);
    assert_eq!(up.calls(), 1, "no retry once text was forwarded");
}

#[tokio::test]
async fn a_malformed_sse_line_ends_the_stream_with_an_error() {
    let up = Upstream::openai().await;
    up.push(Reply::sse(vec![
        fakes::openai_delta("Partial"),
        "data: {\"choices\": [{\"delta\": {\"content\": \n\n".to_owned(),
        fakes::openai_delta(" never"),
    ]));
    let (deltas, last) = collect(
        openai(&up)
            .stream(&chain(&["openai/gpt-4o-mini"]), &request())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(deltas, ["Partial"]);
    let StreamEvent::Failed { error, partial } = last else {
        panic!("{last:?}")
    };
    assert_eq!(error.code(), "upstream_error");
    assert_eq!(partial.content, "Partial");
}

#[tokio::test]
async fn a_first_token_slower_than_the_timeout_fails_fast() {
    let up = Upstream::openai().await;
    up.push(Reply::Sse {
        events: vec![
            fakes::openai_delta("too late"),
            fakes::openai_finish("stop"),
        ],
        first_delay: Duration::from_secs(4),
        gated: false,
        cut: false,
    });
    let started = std::time::Instant::now();
    let failure = match openai(&up)
        .stream(&chain(&["openai/gpt-4o-mini"]), &request())
        .await
    {
        Err(f) => f,
        Ok(_) => panic!("the slow stream must not be forwarded"),
    };
    assert_eq!(failure.error, ProviderError::FirstTokenTimeout);
    assert_eq!(failure.error.code(), "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "gave up at the 1 s first-token timeout"
    );
}

#[tokio::test]
async fn the_breaker_opens_and_closes_again() {
    let up = Upstream::openai().await;
    let registry = registry(&[
        ("OPENAI_BASE_URL", up.url.as_str()),
        ("COLLOQUY_PROVIDERS__MAX_RETRIES", "0"),
        ("COLLOQUY_PROVIDERS__BREAKER_FAILURES", "2"),
        ("COLLOQUY_PROVIDERS__BREAKER_COOLDOWN_SECS", "1"),
    ]);
    let models = chain(&["openai/gpt-4o-mini"]);
    for _ in 0..2 {
        up.push(Reply::json(
            503,
            fakes::openai_error("overloaded", "server_error", None),
        ));
        assert_eq!(
            registry
                .send(&models, &request())
                .await
                .unwrap_err()
                .error
                .code(),
            "upstream_unavailable"
        );
    }
    assert_eq!(registry.breaker_states()["openai"], "open");
    // Open: fails fast without calling the upstream.
    let failure = registry.send(&models, &request()).await.unwrap_err();
    assert!(matches!(failure.error, ProviderError::CircuitOpen(_)));
    assert_eq!(up.calls(), 2);
    // After the cooldown one trial goes through; its success closes the circuit.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    up.push(Reply::json(200, fakes::openai_completion("back", 1, 1)));
    assert_eq!(
        registry.send(&models, &request()).await.unwrap().content,
        "back"
    );
    assert_eq!(registry.breaker_states()["openai"], "closed");
}

#[tokio::test]
async fn anthropic_send_places_the_system_prompt_and_normalizes_cached_tokens() {
    let up = Upstream::anthropic().await;
    up.push(Reply::json(200, json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Four."}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2000, "output_tokens": 3}
    })));
    let mut req = request();
    req.max_tokens = None;
    let done = anthropic(&up)
        .send(&chain(&["anthropic/claude-sonnet-4-5"]), &req)
        .await
        .unwrap();
    assert_eq!(done.content, "Four.");
    // Anthropic reports cache reads outside input_tokens; ours includes them.
    assert_eq!(
        (
            done.usage.input_tokens,
            done.usage.cached_input_tokens,
            done.usage.output_tokens
        ),
        (2020, 2000, 3)
    );
    let sent = &up.received()[0];
    assert_eq!(sent.headers["x-api-key"], "sk-ant-test");
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert_eq!(sent.body["system"], "Be brief.");
    assert_eq!(
        sent.body["max_tokens"], 4096,
        "required, so a default is sent"
    );
    assert_eq!(
        sent.body["messages"].as_array().unwrap().len(),
        3,
        "no system message in the list"
    );
    assert_eq!(
        sent.body["messages"][0]["content"][0],
        json!({"type": "text", "text": "Hello"})
    );
    assert_eq!(sent.body["metadata"]["user_id"], "user-hash");
}

#[tokio::test]
async fn anthropic_stream_events_and_errors() {
    let up = Upstream::anthropic().await;
    let ev = fakes::anthropic_event;
    up.push(Reply::sse(vec![
        ev("message_start", json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "usage": {"input_tokens": 25, "output_tokens": 1}}})),
        ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        ev("ping", json!({"type": "ping"})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}})),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null}, "usage": {"output_tokens": 15}})),
        ev("message_stop", json!({"type": "message_stop"})),
    ]));
    let registry = anthropic(&up);
    let (deltas, last) = collect(
        registry
            .stream(&chain(&["anthropic/claude-sonnet-4-5"]), &request())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(deltas, ["Hello", "!"]);
    let StreamEvent::Done(done) = last else {
        panic!("{last:?}")
    };
    assert_eq!(done.finish_reason, FinishReason::Length);
    assert_eq!(
        (
            done.usage.input_tokens,
            done.usage.output_tokens,
            done.usage.estimated
        ),
        (25, 15, false)
    );

    // An overloaded error event mid-stream.
    up.push(Reply::sse(vec![
        ev("message_start", json!({"type": "message_start", "message": {"usage": {"input_tokens": 25, "output_tokens": 1}}})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Par"}})),
        ev("error", json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
    ]));
    let (deltas, last) = collect(
        registry
            .stream(&chain(&["anthropic/claude-sonnet-4-5"]), &request())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(deltas, ["Par"]);
    assert!(
        matches!(last, StreamEvent::Failed { ref error, .. } if error.code() == "upstream_unavailable"),
        "{last:?}"
    );

    // 529 overloaded before anything: retried; a too-long prompt: not retried.
    up.push(Reply::json(
        529,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ));
    up.push(Reply::json(200, json!({"content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}})));
    assert_eq!(
        registry
            .send(&chain(&["anthropic/claude-sonnet-4-5"]), &request())
            .await
            .unwrap()
            .attempts,
        2
    );
    up.push(Reply::json(400, json!({"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 210000 tokens > 200000 maximum"}})));
    let failure = registry
        .send(&chain(&["anthropic/claude-sonnet-4-5"]), &request())
        .await
        .unwrap_err();
    assert_eq!(failure.error.code(), "context_length_exceeded");
}

#[tokio::test]
async fn the_mock_answers_deterministically_and_says_it_is_a_mock() {
    let registry = registry(&[]);
    let models = chain(&["mock/echo"]);
    let done = registry.send(&models, &request()).await.unwrap();
    assert_eq!(done.content, "[mock] You said: What is 2+2?");
    assert_eq!(done.provider, "mock");
    assert!(done.usage.input_tokens > 0 && done.usage.output_tokens > 0 && !done.usage.estimated);
    let (deltas, last) = collect(registry.stream(&models, &request()).await.unwrap()).await;
    assert!(deltas.len() > 2, "{deltas:?}");
    let StreamEvent::Done(streamed) = last else {
        panic!("{last:?}")
    };
    assert_eq!(streamed.content, done.content, "same answer both ways");
    assert_eq!(deltas.concat(), done.content);
}
