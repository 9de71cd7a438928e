//! The OpenAI-compatible API over real connections: `/v1/chat/completions` against a fake
//! OpenAI upstream (what reaches the provider, the completion's shape, the stream's chunks
//! and its usage chunk), conversations named by header, directly named models and
//! `/v1/models`, and every error in OpenAI's shape with OpenAI's statuses.

use colloquy::domain::Role;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::chat::with_openai;
use crate::fakes::{self, Reply, Upstream};
use crate::helpers::{Backend, TestApp, count, eventually_count};
use crate::on_both_backends;

on_both_backends!(
    a_completion_reaches_the_provider_and_is_accounted,
    a_stream_in_chunks_with_its_usage_chunk,
    a_named_conversation_gets_the_exchange,
);

fn completions(app: &TestApp, token: &str, body: Value) -> reqwest::RequestBuilder {
    app.post("/v1/chat/completions")
        .bearer_auth(token)
        .json(&body)
}

/// Asserts OpenAI's error shape (exactly its four fields) and returns the error object.
async fn assert_openai_error(
    response: reqwest::Response,
    status: u16,
    kind: &str,
    code: &str,
) -> Value {
    assert_eq!(response.status().as_u16(), status, "status for {code}");
    assert!(
        response.headers().contains_key("x-request-id"),
        "x-request-id on error"
    );
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.expect("JSON error body");
    let error = body["error"].as_object().expect("an error object");
    let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message", "param", "type"], "{body}");
    assert_eq!(error["type"], kind, "{body}");
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body["error"].clone()
}

/// The data of each event (`[DONE]` as a string), checking no event carries a name:
/// OpenAI's streams are `data:` lines only.
async fn read_data(response: reqwest::Response) -> Vec<Value> {
    let mut out = Vec::new();
    let mut stream = response.bytes_stream().eventsource();
    while let Some(event) = stream.next().await {
        let event = event.expect("well-formed SSE");
        assert_eq!(event.event, "message", "no event names");
        out.push(if event.data == "[DONE]" {
            Value::String(event.data)
        } else {
            serde_json::from_str(&event.data).expect("JSON data")
        });
    }
    out
}

async fn a_completion_reaches_the_provider_and_is_accounted(backend: Backend) {
    let up = Upstream::openai().await;
    let Some(app) = with_openai(backend, &up, &[]).await else {
        return;
    };
    for _ in 0..2 {
        up.push(Reply::json(200, fakes::openai_completion("Four.", 31, 2)));
    }
    let alice = app.token("alice", Role::User);
    let body = json!({
        "model": "analyst",
        "messages": [
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "Four."},
            {"role": "user", "content": [{"type": "text", "text": "And 2+2 again?"}]}
        ],
        "temperature": 0.1,
        "max_completion_tokens": 50,
        "stop": ["\n\n", "END"],
        "user": "end-user-7",
        "n": 1,
        "top_p": 1,
        "stream": false
    });
    let response = completions(&app, &alice, body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-ratelimit-remaining"));
    let completion: Value = response.json().await.unwrap();
    assert!(
        completion["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-")),
        "{completion}"
    );
    assert_eq!(completion["object"], "chat.completion");
    assert!(completion["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(completion["model"], "analyst");
    assert_eq!(completion["choices"].as_array().unwrap().len(), 1);
    let choice = &completion["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "Four.");
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(
        completion["usage"],
        json!({"prompt_tokens": 31, "completion_tokens": 2, "total_tokens": 33,
               "prompt_tokens_details": {"cached_tokens": 0}})
    );

    // What the provider was sent: the specialist's prompt, then the caller's system text,
    // the history and the parameters; the end user only as a hash.
    let sent = &up.received()[0].body;
    assert_eq!(sent["model"], "gpt-4o-mini");
    let system = sent["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("You are a careful financial analyst.")
            && system.ends_with("\n\nAnswer in one word."),
        "{system}"
    );
    let turns: Vec<(&str, &str)> = sent["messages"].as_array().unwrap()[1..]
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap(),
                m["content"]
                    .as_str()
                    .unwrap_or_else(|| m["content"][0]["text"].as_str().expect("text content")),
            )
        })
        .collect();
    assert_eq!(
        turns,
        [
            ("user", "What is 2+2?"),
            ("assistant", "Four."),
            ("user", "And 2+2 again?")
        ]
    );
    assert!((sent["temperature"].as_f64().unwrap() - 0.1).abs() < 1e-6);
    assert_eq!(sent["max_tokens"], 50);
    assert_eq!(sent["stop"], json!(["\n\n", "END"]));
    let user = sent["user"].as_str().unwrap();
    assert_eq!(user.len(), 32, "{user}");
    assert!(!user.contains("end-user-7"));

    // The same end user maps to the same id; another end user to another.
    let response = completions(&app, &alice, body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(up.received()[1].body["user"], user);
    up.push(Reply::json(200, fakes::openai_completion("Five.", 3, 1)));
    let mut other = body;
    other["user"] = json!("end-user-8");
    let response = completions(&app, &alice, other).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_ne!(up.received()[2].body["user"], user);

    // Accounted like a native call; nothing else stored without a conversation named.
    assert_eq!(
        eventually_count(
            &app.db,
            "SELECT count(*) FROM usage_logs WHERE specialist_id = 'analyst' AND success AND input_tokens = 31",
            2
        )
        .await,
        2
    );
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM conversations").await,
        0
    );
    assert_eq!(count(&app.db, "SELECT count(*) FROM messages").await, 0);
}

async fn a_stream_in_chunks_with_its_usage_chunk(backend: Backend) {
    let up = Upstream::openai().await;
    let Some(app) = with_openai(backend, &up, &[]).await else {
        return;
    };
    let script = || {
        Reply::sse(vec![
            fakes::openai_delta("Hel"),
            fakes::openai_delta("lo"),
            fakes::openai_finish("length"),
            fakes::openai_usage(12, 2, 4),
            fakes::OPENAI_DONE.to_owned(),
        ])
    };
    up.push(script()).push(script());
    let alice = app.token("alice", Role::User);
    let ask = |include_usage: bool| {
        let mut body = json!({
            "model": "general",
            "messages": [{"role": "user", "content": "Say hello"}],
            "stream": true,
        });
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    };

    let response = completions(&app, &alice, ask(true)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let events = read_data(response).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks = &events[..events.len() - 1];
    assert_eq!(chunks.len(), 5, "{chunks:?}");
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for chunk in chunks {
        assert_eq!(chunk["id"], id, "one id for the whole stream");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "general");
        assert!(chunk["created"].as_u64().is_some());
    }
    // The role first, then the text, then the finish reason: usage null on all of them.
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let text: String = chunks[1..3]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello");
    assert_eq!(chunks[3]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "length");
    for chunk in &chunks[..4] {
        assert!(chunk["choices"][0]["finish_reason"].is_null() || chunk == &chunks[3]);
        assert!(
            chunk.get("usage").is_some_and(Value::is_null),
            "usage: null before the last chunk: {chunk}"
        );
    }
    // The usage chunk: no choices, the call's usage.
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(
        chunks[4]["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14,
               "prompt_tokens_details": {"cached_tokens": 4}})
    );

    // Without include_usage: no usage field at all, and no usage chunk.
    let response = completions(&app, &alice, ask(false)).send().await.unwrap();
    let events = read_data(response).await;
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(events[..4].iter().all(|c| c.get("usage").is_none()));
    assert_eq!(events[4], "[DONE]");

    // Both calls are accounted, with the upstream's usage.
    assert_eq!(
        eventually_count(
            &app.db,
            "SELECT count(*) FROM usage_logs WHERE specialist_id = 'general' AND success AND output_tokens = 2",
            2
        )
        .await,
        2
    );
}

async fn a_named_conversation_gets_the_exchange(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, &[("COLLOQUY_CHAT__USAGE_FLUSH_MS", "20")]).await
    else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let bob = app.token("bob", Role::User);
    let created: Value = app
        .post("/v1/conversations")
        .bearer_auth(&alice)
        .json(&json!({"title": "Via the SDK", "specialist_id": "general"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let conversation = created["id"].as_str().unwrap().to_owned();
    let ask = json!({
        "model": "general",
        "messages": [
            {"role": "user", "content": "Earlier question"},
            {"role": "assistant", "content": "Earlier answer"},
            {"role": "user", "content": "Remember this"}
        ]
    });
    let response = completions(&app, &alice, ask.clone())
        .header("x-conversation-id", &conversation)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    // The exchange is appended: the user message and the answer, not the sent history
    // (listed newest first).
    let messages = app
        .get_json(
            &format!("/v1/conversations/{conversation}/messages"),
            &alice,
        )
        .await;
    let stored: Vec<(&str, &str)> = messages["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        stored,
        [
            (
                "assistant",
                answer["choices"][0]["message"]["content"].as_str().unwrap()
            ),
            ("user", "Remember this"),
        ]
    );
    // A stream into the same conversation appends its exchange too.
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let response = completions(&app, &alice, streamed)
        .header("x-conversation-id", &conversation)
        .send()
        .await
        .unwrap();
    assert_eq!(read_data(response).await.last().unwrap(), "[DONE]");
    assert_eq!(
        eventually_count(&app.db, "SELECT count(*) FROM messages", 4).await,
        4
    );

    // Someone else's conversation is not found; a malformed id names the header.
    let response = completions(&app, &bob, ask.clone())
        .header("x-conversation-id", &conversation)
        .send()
        .await
        .unwrap();
    assert_openai_error(response, 404, "invalid_request_error", "not_found").await;
    let response = completions(&app, &alice, ask)
        .header("x-conversation-id", "not-a-uuid")
        .send()
        .await
        .unwrap();
    let error = assert_openai_error(response, 400, "invalid_request_error", "invalid_field").await;
    assert_eq!(error["param"], "X-Conversation-Id");
    assert_eq!(count(&app.db, "SELECT count(*) FROM messages").await, 4);
}

#[tokio::test]
async fn direct_models_and_the_model_list() {
    let up = Upstream::openai().await;
    let Some(app) = with_openai(
        Backend::Sqlite,
        &up,
        &[
            ("COLLOQUY_CHAT__DIRECT_MODELS", r#"["openai/gpt-4.1-nano"]"#),
            ("COLLOQUY_CHAT__DIRECT_MODEL_ROLES", r#"["admin"]"#),
        ],
    )
    .await
    else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let root = app.token("root", Role::Admin);
    let viewer = app.token("vera", Role::Viewer);
    let ids = |list: &Value| -> Vec<String> {
        assert_eq!(list["object"], "list");
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(m["object"], "model");
                assert!(m["created"].is_u64() && m["owned_by"].is_string());
                m["id"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    assert_eq!(
        ids(&app.get_json("/v1/models", &alice).await),
        ["general", "analyst", "writer"]
    );
    assert_eq!(
        ids(&app.get_json("/v1/models", &root).await),
        ["general", "analyst", "writer", "openai/gpt-4.1-nano"]
    );
    // Viewers may not chat, so they may use no model.
    assert!(ids(&app.get_json("/v1/models", &viewer).await).is_empty());
    let one = app.get_json("/v1/models/openai/gpt-4.1-nano", &root).await;
    assert_eq!(one["id"], "openai/gpt-4.1-nano");
    assert_eq!(one["owned_by"], "openai");
    let response = app
        .get("/v1/models/openai/gpt-4.1-nano")
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let error =
        assert_openai_error(response, 404, "invalid_request_error", "model_not_found").await;
    assert_eq!(error["param"], "model");

    // A direct model: the caller's system message is the only prompt; usage names no
    // specialist.
    let ask = json!({
        "model": "openai/gpt-4.1-nano",
        "messages": [{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "Hi"}]
    });
    let response = completions(&app, &alice, ask.clone()).send().await.unwrap();
    assert_openai_error(response, 404, "invalid_request_error", "model_not_found").await;
    assert_eq!(up.calls(), 0);
    up.push(Reply::json(200, fakes::openai_completion("Hi.", 5, 1)));
    let response = completions(&app, &root, ask).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let sent = &up.received()[0].body;
    assert_eq!(sent["model"], "gpt-4.1-nano");
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be terse."})
    );
    assert_eq!(
        eventually_count(
            &app.db,
            "SELECT count(*) FROM usage_logs WHERE specialist_id IS NULL AND model = 'openai/gpt-4.1-nano'",
            1
        )
        .await,
        1
    );
    let response = completions(
        &app,
        &viewer,
        json!({"model": "general", "messages": [{"role": "user", "content": "x"}]}),
    )
    .send()
    .await
    .unwrap();
    assert_openai_error(response, 403, "permission_error", "forbidden").await;
}

#[tokio::test]
async fn errors_in_openai_shape_with_openai_statuses() {
    let up = Upstream::openai().await;
    let Some(app) = with_openai(
        Backend::Sqlite,
        &up,
        &[
            ("COLLOQUY_RATE_LIMIT__CHAT__CAPACITY", "100"),
            ("COLLOQUY_RATE_LIMIT__ROLES__ADMIN__CHAT__CAPACITY", "2"),
            ("COLLOQUY_RATE_LIMIT__ROLES__ADMIN__CHAT__PER_MINUTE", "1"),
        ],
    )
    .await
    else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let ok = json!({"model": "general", "messages": [{"role": "user", "content": "x"}]});

    // Credentials: missing and wrong both 401 invalid_api_key, with WWW-Authenticate.
    let response = app
        .post("/v1/chat/completions")
        .json(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_openai_error(response, 401, "authentication_error", "invalid_api_key").await;
    let response = completions(
        &app,
        "ck_not_a_real_key_at_all_000000000000000000",
        ok.clone(),
    )
    .send()
    .await
    .unwrap();
    assert_openai_error(response, 401, "authentication_error", "invalid_api_key").await;
    let response = app.get("/v1/models").send().await.unwrap();
    assert_openai_error(response, 401, "authentication_error", "invalid_api_key").await;

    // Bad input: 400 (never 422) naming the parameter.
    let cases = [
        (
            json!({"model": "general", "messages": [{"role": "user", "content": "x"}], "temperature": 3}),
            "temperature",
            "invalid_field",
        ),
        (
            json!({"model": "general", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
            "temperature",
            "invalid_field",
        ),
        (
            json!({"model": "general", "messages": [{"role": "user", "content": "x"}], "presence_penalty": 0.5}),
            "presence_penalty",
            "unsupported_parameter",
        ),
        (
            json!({"model": "general", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"50256": -100}}),
            "logit_bias",
            "unsupported_parameter",
        ),
        (
            json!({"model": "general", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}]}),
            "tools",
            "unsupported_parameter",
        ),
        (
            json!({"model": "general", "messages": [{"role": "user", "content": "x"}], "n": 3}),
            "n",
            "unsupported_parameter",
        ),
        (
            json!({"model": "general", "messages": [{"role": "user", "content": "x"}], "temprature": 1}),
            "temprature",
            "unknown_parameter",
        ),
        (
            json!({"model": "general", "messages": []}),
            "messages",
            "invalid_field",
        ),
        (
            json!({"model": "general", "messages": [{"role": "user", "content": "   "}]}),
            "messages[0].content",
            "invalid_field",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}]}),
            "model",
            "invalid_field",
        ),
        (
            json!({"model": "general", "messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role",
            "invalid_field",
        ),
    ];
    for (body, param, code) in cases {
        let response = completions(&app, &alice, body.clone())
            .send()
            .await
            .unwrap();
        let error = assert_openai_error(response, 400, "invalid_request_error", code).await;
        assert_eq!(error["param"], param, "{body}");
    }
    let response = app
        .post("/v1/chat/completions")
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_openai_error(response, 400, "invalid_request_error", "malformed_json").await;
    let response = app
        .client
        .put(app.url("/v1/chat/completions"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("allow"));
    assert_openai_error(response, 405, "invalid_request_error", "method_not_allowed").await;
    assert_eq!(up.calls(), 0, "no refused request reached the provider");

    // The upstream failing: a 5xx server_error before a stream (OpenAI's own 500 reads as
    // the provider being unavailable), an error event during one, with no [DONE] after it.
    up.push(Reply::json(
        500,
        fakes::openai_error("boom", "server_error", None),
    ));
    let response = completions(&app, &alice, ok.clone()).send().await.unwrap();
    assert_openai_error(response, 503, "server_error", "upstream_unavailable").await;
    up.push(Reply::Sse {
        events: vec![fakes::openai_delta("Half an ans")],
        first_delay: std::time::Duration::ZERO,
        gated: false,
        cut: true,
    });
    let mut streamed = ok.clone();
    streamed["stream"] = json!(true);
    let response = completions(&app, &alice, streamed).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let events = read_data(response).await;
    let last = events.last().unwrap();
    assert_eq!(last["error"]["type"], "server_error", "{events:?}");
    assert!(last["error"]["code"].is_string());
    assert!(!events.iter().any(|e| e == "[DONE]"));

    // An admin's chat bucket holds 2 here: the third call is 429 rate_limit_exceeded, with
    // Retry-After.
    let ops = app.token("ops", Role::Admin);
    let refused =
        json!({"model": "general", "messages": [{"role": "user", "content": "x"}], "n": 2});
    for _ in 0..2 {
        let response = completions(&app, &ops, refused.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
    }
    let response = completions(&app, &ops, ok.clone()).send().await.unwrap();
    assert!(response.headers().contains_key("retry-after"));
    assert_openai_error(response, 429, "requests", "rate_limit_exceeded").await;

    // A budget that does not fit: 429 insufficient_quota, marked not worth retrying.
    let admin = app.token("root", Role::Admin);
    let put = app
        .client
        .put(app.url("/v1/admin/users/carol/budget"))
        .bearer_auth(admin)
        .json(&json!({"monthly_nano_usd": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let carol = app.token("carol", Role::User);
    let response = completions(&app, &carol, ok).send().await.unwrap();
    assert_eq!(response.headers()["x-should-retry"], "false");
    assert_openai_error(response, 429, "insufficient_quota", "insufficient_quota").await;
}

#[tokio::test]
async fn an_api_key_works_as_the_bearer_token() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let created: Value = app
        .post("/v1/api-keys")
        .bearer_auth(&alice)
        .json(&json!({"name": "sdk", "role": "user"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["secret"].as_str().unwrap();
    let response = completions(
        &app,
        key,
        json!({"model": "general", "messages": [{"role": "user", "content": "Hello there"}]}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let completion: Value = response.json().await.unwrap();
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "[mock] You said: Hello there"
    );
    assert_eq!(
        app.get_json("/v1/models", key).await["data"][0]["id"],
        "general"
    );
}
