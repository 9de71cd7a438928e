//! Chat over real connections on both databases: send and stream through the mock and a fake
//! OpenAI upstream, SSE read by a real SSE client, errors before and during streams,
//! detached generation when the client leaves, no lost usage rows, ownership, stateless mode.

use std::time::Duration;

use colloquy::domain::Role;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::fakes::{self, Reply, Upstream};
use crate::helpers::{Backend, TestApp, assert_envelope, count, eventually_count};
use crate::on_both_backends;

/// An app whose default model is a fake OpenAI upstream's (no retries, fast usage writes).
pub async fn with_openai(
    backend: Backend,
    up: &Upstream,
    extra: &[(&str, &str)],
) -> Option<TestApp> {
    let mut env = vec![
        ("OPENAI_BASE_URL", up.url.as_str()),
        ("OPENAI_API_KEY", "sk-test"),
        ("COLLOQUY_DEFAULT_MODEL", "openai/gpt-4o-mini"),
        ("COLLOQUY_PROVIDERS__MAX_RETRIES", "0"),
        ("COLLOQUY_CHAT__USAGE_FLUSH_MS", "20"),
    ];
    env.extend_from_slice(extra);
    TestApp::spawn_with(backend, &env).await
}

/// Reads an SSE response into (id, event, data) triples.
pub async fn read_events(response: reqwest::Response) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let mut stream = response.bytes_stream().eventsource();
    while let Some(event) = stream.next().await {
        let event = event.expect("well-formed SSE");
        out.push((
            event.id,
            event.event,
            serde_json::from_str(&event.data).expect("JSON data"),
        ));
    }
    out
}

pub fn stream_request(app: &TestApp, token: &str, body: Value) -> reqwest::RequestBuilder {
    app.post("/v1/chat/stream").bearer_auth(token).json(&body)
}

on_both_backends!(
    send_and_stream_through_the_mock,
    history_and_attachments_reach_the_provider,
    upstream_errors_before_and_during_a_stream,
    a_client_that_leaves_does_not_stop_the_answer,
    refusals_and_ownership,
    stateless_mode_stores_only_usage,
    idempotent_replay,
);

async fn idempotent_replay(backend: Backend) {
    let up = Upstream::openai().await;
    let Some(app) = with_openai(backend, &up, &[]).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let bob = app.token("bob", Role::User);
    let body = json!({"specialist_id": "general", "message": "charge me once"});
    let send = |token: &str, key: &str, body: &Value| {
        app.post("/v1/chat/send")
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(body)
            .send()
    };
    up.push(Reply::json(200, fakes::openai_completion("Once.", 10, 2)));
    let first = send(&alice, "key-1", &body).await.unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    // The same key and body (keys in another order): the stored answer, no second call.
    let reordered = json!({"message": "charge me once", "specialist_id": "general"});
    let again = send(&alice, "key-1", &reordered).await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(up.calls(), 1);
    // The same key with another body is refused.
    let other = json!({"specialist_id": "general", "message": "something else"});
    assert_envelope(
        send(&alice, "key-1", &other).await.unwrap(),
        422,
        "idempotency_key_reused",
    )
    .await;
    // Keys are per user.
    up.push(Reply::json(200, fakes::openai_completion("Bob's.", 10, 2)));
    let bobs: Value = send(&bob, "key-1", &body)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bobs["content"], "Bob's.");
    // A failed call gives its key back, so it can be retried.
    up.push(Reply::json(
        503,
        fakes::openai_error("down", "server_error", None),
    ));
    assert_eq!(send(&alice, "key-2", &body).await.unwrap().status(), 503);
    up.push(Reply::json(
        200,
        fakes::openai_completion("Retried.", 10, 2),
    ));
    assert_eq!(
        send(&alice, "key-2", &body)
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["content"],
        "Retried."
    );
    assert_envelope(
        send(&alice, &"k".repeat(300), &body).await.unwrap(),
        422,
        "invalid_field",
    )
    .await;
    // Exactly one usage row per chat call: three answers and one failure. (Naming the
    // new conversations is a call of its own, with no specialist: see `titles`.)
    assert_eq!(
        eventually_count(
            &app.db,
            "SELECT count(*) FROM usage_logs WHERE specialist_id IS NOT NULL",
            4
        )
        .await,
        4
    );
}

async fn send_and_stream_through_the_mock(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, &[("COLLOQUY_CHAT__USAGE_FLUSH_MS", "20")]).await
    else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let listed: Value = app
        .get("/v1/specialists")
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == "general")
    );
    assert!(
        listed["data"][0].get("system_prompt").is_none(),
        "prompts stay on the server"
    );

    let response = app
        .post("/v1/chat/send")
        .bearer_auth(&alice)
        .json(&json!({"specialist_id": "general", "message": "What is 2+2?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let timing = response.headers()["server-timing"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        timing.starts_with("app;dur=") && timing.contains("provider;dur="),
        "{timing}"
    );
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["content"], "[mock] You said: What is 2+2?");
    assert_eq!(
        (reply["provider"].as_str(), reply["model"].as_str()),
        (Some("mock"), Some("mock/echo"))
    );
    assert!(
        reply["input_tokens"].as_u64().unwrap() > 0 && reply["output_tokens"].as_u64().unwrap() > 0
    );
    let conversation: uuid::Uuid = reply["conversation_id"].as_str().unwrap().parse().unwrap();
    let messages = app.store.list_messages(conversation).await.unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[1].id.to_string(),
        reply["message_id"].as_str().unwrap()
    );
    assert_eq!(
        messages[1].status,
        colloquy::domain::MessageStatus::Complete
    );

    // The same conversation, streamed.
    let response = stream_request(
        &app,
        &alice,
        json!({"specialist_id": "general", "message": "And 3+3?", "conversation_id": conversation}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let events = read_events(response).await;
    let names: Vec<&str> = events.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(names.first(), Some(&"start"));
    assert_eq!(names.last(), Some(&"done"));
    assert!(
        names[1..names.len() - 1].iter().all(|n| *n == "delta") && names.len() > 3,
        "{names:?}"
    );
    // Ids are byte offsets into the answer: how much of it the client has at each event.
    let ids: Vec<usize> = events
        .iter()
        .map(|(id, _, _)| id.parse().unwrap())
        .collect();
    let offsets: Vec<usize> = events
        .iter()
        .scan(0, |offset, (_, name, data)| {
            if name == "delta" {
                *offset += data["content"].as_str().unwrap().len();
            }
            Some(*offset)
        })
        .collect();
    assert_eq!(ids, offsets);
    assert_eq!(ids.last(), Some(&"[mock] You said: And 3+3?".len()));
    assert_eq!(events[0].2["conversation_id"], conversation.to_string());
    let text: String = events
        .iter()
        .filter(|(_, e, _)| e == "delta")
        .map(|(_, _, d)| d["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "[mock] You said: And 3+3?");
    let done = &events.last().unwrap().2;
    assert!(
        done["output_tokens"].as_u64().unwrap() > 0 && done["ttft_ms"].is_u64(),
        "{done}"
    );
    assert_eq!(
        app.store.list_messages(conversation).await.unwrap().len(),
        4
    );

    // Every call is accounted: two rows, one streamed.
    assert_eq!(
        eventually_count(
            &app.db,
            "SELECT count(*) FROM usage_logs WHERE specialist_id IS NOT NULL",
            2
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) FROM usage_logs WHERE streamed AND success AND output_tokens > 0"
        )
        .await,
        1
    );
}

async fn history_and_attachments_reach_the_provider(backend: Backend) {
    let up = Upstream::openai().await;
    let Some(app) = with_openai(backend, &up, &[]).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    up.push(Reply::json(
        200,
        fakes::openai_completion("First answer.", 50, 3),
    ));
    let first: Value = app
        .post("/v1/chat/send")
        .bearer_auth(&alice)
        .json(&json!({"specialist_id": "analyst", "message": "First question"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // 50 × $0.15/M + 3 × $0.60/M = $0.0000093, computed in integer nano-USD.
    assert_eq!(first["estimated_cost_usd"], json!(9.3e-6));

    // A text file attached to the second turn.
    let file: Value = app
        .upload(
            &alice,
            &[(Some("q3.csv"), Some("text/csv"), b"quarter,revenue\nQ3,120")],
        )
        .await
        .json()
        .await
        .unwrap();
    let file_id = file["data"][0]["id"].as_str().unwrap();

    up.push(Reply::sse(vec![
        fakes::openai_delta("Second "),
        fakes::openai_delta("answer."),
        fakes::openai_finish("stop"),
        fakes::openai_usage(80, 2, 0),
        fakes::OPENAI_DONE.into(),
    ]));
    let events = read_events(
        stream_request(&app, &alice, json!({"specialist_id": "analyst", "message": "Second question", "conversation_id": first["conversation_id"], "file_ids": [file_id]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(events.last().unwrap().1, "done");
    let sent = &up.received()[1].body;
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(
        messages[1],
        json!({"role": "user", "content": "First question"})
    );
    assert_eq!(
        messages[2],
        json!({"role": "assistant", "content": "First answer."})
    );
    let last = messages[3]["content"].as_str().unwrap();
    assert!(
        last.contains("quarter,revenue")
            && last.contains("q3.csv")
            && last.ends_with("Second question"),
        "{last}"
    );
    assert_eq!(sent["stream_options"]["include_usage"], true);

    // An image to a specialist whose model takes none.
    let png = [
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d,
    ];
    let image: Value = app
        .upload(&alice, &[(Some("p.png"), Some("image/png"), &png)])
        .await
        .json()
        .await
        .unwrap();
    let response = app.post("/v1/chat/send").bearer_auth(&alice).json(&json!({"specialist_id": "analyst", "message": "Look", "file_ids": [image["data"][0]["id"]]})).send().await.unwrap();
    assert_envelope(response, 422, "attachment_not_supported").await;
    assert_eq!(up.calls(), 2, "refused before any provider call");
}

async fn upstream_errors_before_and_during_a_stream(backend: Backend) {
    let up = Upstream::openai().await;
    let Some(app) = with_openai(backend, &up, &[]).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    // Before: the provider refuses the call.
    up.push(Reply::json(
        503,
        fakes::openai_error("overloaded", "server_error", None),
    ));
    let events = read_events(
        stream_request(
            &app,
            &alice,
            json!({"specialist_id": "general", "message": "hi"}),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        events
            .iter()
            .map(|(_, e, _)| e.as_str())
            .collect::<Vec<_>>(),
        ["start", "error"]
    );
    assert_eq!(events[1].2["code"], "upstream_unavailable");
    assert!(
        !events[1].2["message"]
            .as_str()
            .unwrap()
            .contains("overloaded"),
        "no upstream text"
    );
    let conversation: uuid::Uuid = events[0].2["conversation_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let messages = app.store.list_messages(conversation).await.unwrap();
    assert_eq!(messages[1].status, colloquy::domain::MessageStatus::Error);

    // During: the stream is cut after some text.
    up.push(Reply::Sse {
        events: vec![
            fakes::openai_delta("Half an "),
            fakes::openai_delta("answer"),
        ],
        first_delay: Duration::ZERO,
        gated: false,
        cut: true,
    });
    let events = read_events(stream_request(&app, &alice, json!({"specialist_id": "general", "message": "again", "conversation_id": conversation})).send().await.unwrap()).await;
    let names: Vec<&str> = events.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(names, ["start", "delta", "delta", "error"]);
    let messages = app.store.list_messages(conversation).await.unwrap();
    assert_eq!(messages[3].status, colloquy::domain::MessageStatus::Cut);
    assert_eq!(messages[3].content, "Half an answer");

    // The send endpoint maps the failure to its code, in the envelope.
    up.push(Reply::json(
        400,
        fakes::openai_error(
            "This model's maximum context length is 128000 tokens.",
            "invalid_request_error",
            Some("context_length_exceeded"),
        ),
    ));
    let response = app
        .post("/v1/chat/send")
        .bearer_auth(&alice)
        .json(&json!({"specialist_id": "general", "message": "long"}))
        .send()
        .await
        .unwrap();
    assert_envelope(response, 422, "context_length_exceeded").await;

    // One failed row per call, the partial one with estimated usage.
    assert_eq!(
        eventually_count(
            &app.db,
            "SELECT count(*) FROM usage_logs WHERE specialist_id IS NOT NULL",
            3
        )
        .await,
        3
    );
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM usage_logs WHERE NOT success").await,
        3
    );
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) FROM usage_logs WHERE usage_estimated AND output_tokens > 0"
        )
        .await,
        1
    );
}

async fn a_client_that_leaves_does_not_stop_the_answer(backend: Backend) {
    let up = Upstream::openai().await;
    let Some(app) = with_openai(backend, &up, &[]).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    up.push(Reply::Sse {
        events: vec![
            fakes::openai_delta("The first part, "),
            fakes::openai_delta("and the rest."),
            fakes::openai_finish("stop"),
            fakes::openai_usage(40, 9, 0),
            fakes::OPENAI_DONE.into(),
        ],
        first_delay: Duration::ZERO,
        gated: true,
        cut: false,
    });
    let response = stream_request(
        &app,
        &alice,
        json!({"specialist_id": "general", "message": "tell me"}),
    )
    .send()
    .await
    .unwrap();
    let mut stream = response.bytes_stream().eventsource();
    let start = stream.next().await.unwrap().unwrap();
    let conversation: uuid::Uuid =
        serde_json::from_str::<Value>(&start.data).unwrap()["conversation_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(
        first.event, "delta",
        "the first text arrives while the upstream holds the rest"
    );
    drop(stream); // The client leaves mid-answer.
    up.release();

    let mut stored = Vec::new();
    for _ in 0..100 {
        stored = app.store.list_messages(conversation).await.unwrap();
        if stored.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored.len(), 2, "the answer was finished and stored");
    assert_eq!(stored[1].content, "The first part, and the rest.");
    assert_eq!(stored[1].status, colloquy::domain::MessageStatus::Complete);
    assert_eq!(
        eventually_count(
            &app.db,
            "SELECT count(*) FROM usage_logs WHERE success AND output_tokens = 9",
            1
        )
        .await,
        1
    );
}

async fn refusals_and_ownership(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let bob = app.token("bob", Role::User);
    let viewer = app.token("victor", Role::Viewer);
    let reply: Value = app
        .post("/v1/chat/send")
        .bearer_auth(&alice)
        .json(&json!({"specialist_id": "general", "message": "mine"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // A file of bob's, which alice may not attach.
    let bobs: Value = app
        .upload(
            &bob,
            &[(Some("b.txt"), Some("text/plain"), b"bob's secret")],
        )
        .await
        .json()
        .await
        .unwrap();
    let bobs_file = bobs["data"][0]["id"].clone();
    let many: Vec<String> = (0..11).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let long = "x".repeat(10_001);
    // (token, body, status, code, why)
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            &bob,
            json!({"specialist_id": "general", "message": "hi", "conversation_id": reply["conversation_id"]}),
            404,
            "not_found",
            "another user's conversation",
        ),
        (
            &alice,
            json!({"specialist_id": "nobody", "message": "hi"}),
            404,
            "specialist_not_found",
            "unknown specialist",
        ),
        (
            &viewer,
            json!({"specialist_id": "general", "message": "hi"}),
            403,
            "forbidden",
            "a viewer cannot chat",
        ),
        (
            &alice,
            json!({"specialist_id": "general", "message": "   "}),
            422,
            "invalid_field",
            "empty message",
        ),
        (
            &alice,
            json!({"specialist_id": "general", "message": long}),
            422,
            "invalid_field",
            "message too long",
        ),
        (
            &alice,
            json!({"specialist_id": "general", "message": "hi", "temperature": 5}),
            422,
            "invalid_field",
            "temperature out of range",
        ),
        (
            &alice,
            json!({"specialist_id": "general"}),
            422,
            "invalid_field",
            "no message",
        ),
        (
            &alice,
            json!({"specialist_id": "general", "message": "hi", "file_ids": [bobs_file]}),
            404,
            "not_found",
            "a file that is not yours",
        ),
        (
            &alice,
            json!({"specialist_id": "general", "message": "hi", "file_ids": many}),
            422,
            "invalid_field",
            "too many files",
        ),
        (
            &alice,
            json!({"specialist_id": "general", "message": "hi", "conversation_id": reply["conversation_id"], "conversation_history": []}),
            422,
            "invalid_field",
            "both modes at once",
        ),
    ];
    for (token, body, status, code, why) in cases {
        for path in ["/v1/chat/send", "/v1/chat/stream"] {
            let response = app
                .post(path)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), status, "{path}: {why}");
            assert_envelope(response, status, code).await;
        }
    }
    // Nothing refused left a conversation behind: only the first, answered one exists.
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM conversations").await,
        1
    );
}

async fn stateless_mode_stores_only_usage(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, &[("COLLOQUY_CHAT__USAGE_FLUSH_MS", "20")]).await
    else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let body = json!({
        "specialist_id": "general",
        "message": "and now?",
        "conversation_history": [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "reply"}]
    });
    let reply: Value = app
        .post("/v1/chat/send")
        .bearer_auth(&alice)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["content"], "[mock] You said: and now?");
    assert!(reply["conversation_id"].is_null() && reply["message_id"].is_null());
    let events = read_events(stream_request(&app, &alice, body).send().await.unwrap()).await;
    assert_eq!(events.last().unwrap().1, "done");
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM conversations").await,
        0
    );
    assert_eq!(count(&app.db, "SELECT count(*) FROM messages").await, 0);
    assert_eq!(
        eventually_count(&app.db, "SELECT count(*) FROM usage_logs", 2).await,
        2
    );
}

/// N concurrent calls, some streams abandoned mid-answer, then a graceful shutdown: exactly
/// N usage rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_lost_usage_rows() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = TestApp::spawn_with(
            backend,
            &[
                ("COLLOQUY_PROVIDERS__MOCK_TOKEN_INTERVAL_MS", "30"),
                ("COLLOQUY_CHAT__USAGE_BATCH_ROWS", "5"),
                ("COLLOQUY_CHAT__USAGE_FLUSH_MS", "5000"),
                ("COLLOQUY_RATE_LIMIT__CHAT__CAPACITY", "100"),
            ],
        )
        .await
        else {
            continue;
        };
        let token = app.token("alice", Role::User);
        const N: usize = 12;
        let calls = (0..N).map(|n| {
            let (app, token) = (&app, &token);
            async move {
                let body = json!({"specialist_id": "general", "message": format!("call number {n} with a few more words to stream")});
                match n % 3 {
                    0 => assert_eq!(app.post("/v1/chat/send").bearer_auth(token).json(&body).send().await.unwrap().status(), 200),
                    1 => {
                        let events = read_events(stream_request(app, token, body).send().await.unwrap()).await;
                        assert_eq!(events.last().unwrap().1, "done");
                    }
                    _ => {
                        // Abandoned after the first text.
                        let response = stream_request(app, token, body).send().await.unwrap();
                        let mut stream = response.bytes_stream().eventsource();
                        let _start = stream.next().await;
                        let _first = stream.next().await;
                    }
                }
            }
        });
        futures_util::future::join_all(calls).await;
        let db = app.db.clone();
        // The batch interval is long: rows are still queued when shutdown begins.
        app.shutdown().await;
        assert_eq!(
            count(
                &db,
                "SELECT count(*) FROM usage_logs WHERE specialist_id IS NOT NULL"
            )
            .await,
            N as i64,
            "{backend:?}"
        );
    }
}

/// Past `chat.max_generation_secs` the answer is cut: stored as `cut`, accounted, and the
/// stream says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_past_its_bound_is_cut_stored_and_accounted() {
    let Some(app) = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("COLLOQUY_CHAT__MAX_GENERATION_SECS", "1"),
            ("COLLOQUY_PROVIDERS__MOCK_TOKEN_INTERVAL_MS", "150"),
            ("COLLOQUY_CHAT__USAGE_FLUSH_MS", "20"),
        ],
    )
    .await
    else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let message =
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen";
    let events = read_events(
        stream_request(
            &app,
            &alice,
            json!({"specialist_id": "general", "message": message}),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    let last = events.last().unwrap();
    assert_eq!(
        (last.1.as_str(), last.2["code"].as_str()),
        ("error", Some("cut")),
        "{events:?}"
    );
    let conversation: uuid::Uuid = events[0].2["conversation_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let stored = app.store.list_messages(conversation).await.unwrap();
    assert_eq!(stored[1].status, colloquy::domain::MessageStatus::Cut);
    assert!(
        !stored[1].content.is_empty() && stored[1].content.len() < 60,
        "partial: {}",
        stored[1].content
    );
    assert_eq!(
        eventually_count(
            &app.db,
            "SELECT count(*) FROM usage_logs WHERE error_code = 'cut' AND usage_estimated",
            1
        )
        .await,
        1
    );
}

/// Anthropic by config alone: its key and a default model naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_through_anthropic_by_config_alone() {
    let up = Upstream::anthropic().await;
    let Some(app) = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
            ("ANTHROPIC_BASE_URL", up.url.as_str()),
            ("COLLOQUY_DEFAULT_MODEL", "anthropic/claude-sonnet-4-5"),
        ],
    )
    .await
    else {
        return;
    };
    up.push(Reply::json(200, json!({"content": [{"type": "text", "text": "Hello from Claude."}], "stop_reason": "end_turn", "usage": {"input_tokens": 30, "output_tokens": 5}})));
    let alice = app.token("alice", Role::User);
    let reply: Value = app
        .post("/v1/chat/send")
        .bearer_auth(&alice)
        .json(&json!({"specialist_id": "writer", "message": "hi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["content"], "Hello from Claude.");
    assert_eq!(
        (reply["provider"].as_str(), reply["model"].as_str()),
        (Some("anthropic"), Some("anthropic/claude-sonnet-4-5"))
    );
    // $3/M in, $15/M out.
    assert_eq!(
        reply["estimated_cost_usd"],
        json!(30.0 * 3e-6 + 5.0 * 15e-6)
    );
    assert!(
        up.received()[0].body["system"]
            .as_str()
            .unwrap()
            .contains("business writer")
    );
}

/// A cut answer from a fallback model is accounted to that model, not the specialist's first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_fallback_answer_is_accounted_to_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("specialists.toml"),
        "[[specialists]]\nid = \"s\"\nname = \"S\"\nsystem_prompt = \"Be brief.\"\nmodel = \"dead/some-model\"\nfallback_models = [\"mock/echo\"]\n",
    )
    .unwrap();
    let config_dir = dir.path().display().to_string();
    let Some(app) = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("COLLOQUY_CONFIG_DIR", config_dir.as_str()),
            ("COLLOQUY_PROVIDERS__NAMED__DEAD__KIND", "openai"),
            (
                "COLLOQUY_PROVIDERS__NAMED__DEAD__BASE_URL",
                "http://127.0.0.1:1/v1",
            ),
            ("COLLOQUY_PROVIDERS__MAX_RETRIES", "0"),
            ("COLLOQUY_PROVIDERS__MOCK_TOKEN_INTERVAL_MS", "150"),
            ("COLLOQUY_CHAT__MAX_GENERATION_SECS", "1"),
            ("COLLOQUY_CHAT__USAGE_FLUSH_MS", "20"),
        ],
    )
    .await
    else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let message = "one two three four five six seven eight nine ten eleven twelve thirteen";
    let events = read_events(
        stream_request(
            &app,
            &alice,
            json!({"specialist_id": "s", "message": message}),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(events.last().unwrap().2["code"], "cut", "{events:?}");
    assert_eq!(
        eventually_count(&app.db, "SELECT count(*) FROM usage_logs WHERE provider = 'mock' AND model = 'mock/echo' AND error_code = 'cut'", 1).await,
        1
    );
}
