//! Automatic titles on both databases: a model names a conversation after its first
//! exchange, the first message does when the model fails or none is configured, and a title
//! the user set is never overwritten.

use std::time::Duration;

use colloquy::domain::Role;
use serde_json::{Value, json};

use crate::fakes::{self, Reply, Upstream};
use crate::helpers::{Backend, TestApp, count, eventually_count};
use crate::on_both_backends;

on_both_backends!(
    a_title_call_cut_by_shutdown_is_accounted_with_its_prompt,
    a_model_names_a_new_conversation_once,
    the_first_message_names_it_when_the_model_fails,
    a_title_the_user_set_is_never_overwritten
);

const FIRST: &str =
    "Could you help me plan three days in Lisbon, with food markets and a day trip to Sintra?";

async fn app_with(backend: Backend, up: &Upstream, title_model: &str) -> Option<TestApp> {
    TestApp::spawn_with(
        backend,
        &[
            ("OPENAI_BASE_URL", up.url.as_str()),
            ("OPENAI_API_KEY", "sk-test"),
            ("COLLOQUY_DEFAULT_MODEL", "openai/gpt-4o-mini"),
            ("COLLOQUY_PROVIDERS__MAX_RETRIES", "0"),
            ("COLLOQUY_CHAT__USAGE_FLUSH_MS", "20"),
            ("COLLOQUY_CHAT__TITLE_MODEL", title_model),
        ],
    )
    .await
}

async fn send(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app
        .post("/v1/chat/send")
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The conversation's title once it has one (the naming runs in the background).
async fn eventual_title(app: &TestApp, token: &str, id: &str) -> Option<String> {
    for _ in 0..100 {
        let c = app
            .get_json(&format!("/v1/conversations/{id}"), token)
            .await;
        if let Some(title) = c["title"].as_str() {
            return Some(title.to_owned());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

const TITLE_CALLS: &str = "SELECT count(*) FROM usage_logs WHERE specialist_id IS NULL";

async fn a_model_names_a_new_conversation_once(backend: Backend) {
    let up = Upstream::openai().await;
    let Some(app) = app_with(backend, &up, "openai/gpt-4o-mini").await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    up.push(Reply::json(
        200,
        fakes::openai_completion("Gladly! Day one…", 40, 12),
    ));
    up.push(Reply::json(
        200,
        fakes::openai_completion("Title: \"Three days in Lisbon.\"\n", 60, 6),
    ));
    let answer = send(
        &app,
        &alice,
        json!({"specialist_id": "general", "message": FIRST}),
    )
    .await;
    let id = answer["conversation_id"].as_str().unwrap().to_owned();
    assert_eq!(
        eventual_title(&app, &alice, &id).await.as_deref(),
        Some("Three days in Lisbon"),
        "cleaned of its label, quotes and full stop"
    );
    // The model was asked for a title, about the first message, briefly.
    let asked = &up.received()[1].body;
    let system = asked["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("title"), "{asked}");
    assert_eq!(asked["messages"][1]["content"], FIRST);
    assert_eq!(asked["max_tokens"], 24);
    // Accounted like any call, to the conversation, with no specialist.
    assert_eq!(eventually_count(&app.db, TITLE_CALLS, 1).await, 1);
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) FROM usage_logs WHERE specialist_id IS NULL AND success \
             AND model = 'openai/gpt-4o-mini' AND input_tokens = 60 AND output_tokens = 6 \
             AND conversation_id IS NOT NULL"
        )
        .await,
        1
    );

    // Later exchanges do not rename it.
    up.push(Reply::json(
        200,
        fakes::openai_completion("Day two…", 80, 12),
    ));
    send(
        &app,
        &alice,
        json!({"specialist_id": "general", "message": "And day two?", "conversation_id": id}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(up.calls(), 3, "no second title call");
    assert_eq!(count(&app.db, TITLE_CALLS).await, 1);
}

async fn the_first_message_names_it_when_the_model_fails(backend: Backend) {
    let up = Upstream::openai().await;
    let Some(app) = app_with(backend, &up, "openai/gpt-4o-mini").await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    up.push(Reply::json(
        200,
        fakes::openai_completion("Gladly!", 40, 12),
    ));
    up.push(Reply::json(
        500,
        fakes::openai_error("The server had an error", "server_error", None),
    ));
    let answer = send(
        &app,
        &alice,
        json!({"specialist_id": "general", "message": FIRST}),
    )
    .await;
    let id = answer["conversation_id"].as_str().unwrap();
    assert_eq!(
        eventual_title(&app, &alice, id).await.as_deref(),
        Some("Could you help me plan three days in Lisbon, with food…"),
        "cut at a word"
    );
    // The failed call is accounted too.
    assert_eq!(
        eventually_count(
            &app.db,
            "SELECT count(*) FROM usage_logs WHERE specialist_id IS NULL AND NOT success",
            1
        )
        .await,
        1
    );

    // With no title model the first message names it, and nothing is called.
    let up = Upstream::openai().await;
    let Some(app) = app_with(backend, &up, "").await else {
        return;
    };
    up.push(Reply::json(200, fakes::openai_completion("Sure.", 5, 2)));
    let answer = send(
        &app,
        &alice,
        json!({"specialist_id": "general", "message": "Short  and\nsweet"}),
    )
    .await;
    let id = answer["conversation_id"].as_str().unwrap();
    assert_eq!(
        eventual_title(&app, &alice, id).await.as_deref(),
        Some("Short and sweet")
    );
    assert_eq!(up.calls(), 1);
}

async fn a_title_the_user_set_is_never_overwritten(backend: Backend) {
    let up = Upstream::openai().await;
    let Some(app) = app_with(backend, &up, "openai/gpt-4o-mini").await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let create = |title: Value| {
        let app = &app;
        let alice = &alice;
        async move {
            let c: Value = app
                .post("/v1/conversations")
                .bearer_auth(alice)
                .json(&json!({"specialist_id": "general", "title": title}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            c["id"].as_str().unwrap().to_owned()
        }
    };

    // Titled at creation: no title call at all.
    let titled = create(json!("Mine")).await;
    up.push(Reply::json(200, fakes::openai_completion("Hello.", 5, 2)));
    send(
        &app,
        &alice,
        json!({"specialist_id": "general", "message": FIRST, "conversation_id": titled}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(up.calls(), 1);
    assert_eq!(
        eventual_title(&app, &alice, &titled).await.as_deref(),
        Some("Mine")
    );

    // Titled by the user while the model is still thinking: the model's title is dropped.
    let racing = create(Value::Null).await;
    up.push(Reply::json(200, fakes::openai_completion("Hello.", 5, 2)));
    up.push(Reply::Slow(
        Duration::from_millis(800),
        Box::new(Reply::json(
            200,
            fakes::openai_completion("A generated title", 9, 3),
        )),
    ));
    send(
        &app,
        &alice,
        json!({"specialist_id": "general", "message": FIRST, "conversation_id": racing}),
    )
    .await;
    let renamed = app
        .client
        .patch(app.url(&format!("/v1/conversations/{racing}")))
        .bearer_auth(&alice)
        .json(&json!({"title": "Chosen by me"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    // The title call finished (it is accounted) and changed nothing.
    assert_eq!(eventually_count(&app.db, TITLE_CALLS, 1).await, 1);
    assert_eq!(up.calls(), 3);
    assert_eq!(
        eventual_title(&app, &alice, &racing).await.as_deref(),
        Some("Chosen by me")
    );
}

async fn a_title_call_cut_by_shutdown_is_accounted_with_its_prompt(backend: Backend) {
    let up = Upstream::openai().await;
    let Some(app) = app_with(backend, &up, "openai/gpt-4o-mini").await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    up.push(Reply::json(
        200,
        fakes::openai_completion("Gladly!", 40, 12),
    ));
    // The title call outlives the shutdown grace (5 s in tests) and is cut.
    up.push(Reply::Slow(
        Duration::from_secs(30),
        Box::new(Reply::json(200, fakes::openai_completion("Too late", 9, 3))),
    ));
    let answer = send(
        &app,
        &alice,
        json!({"specialist_id": "general", "message": FIRST}),
    )
    .await;
    let id = answer["conversation_id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let db = app.db.clone();
    app.shutdown().await;
    // Never a silent zero: the prompt was sent, so it is estimated and priced.
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM usage_logs WHERE specialist_id IS NULL AND NOT success \
             AND error_code = 'cut' AND usage_estimated AND input_tokens > 0 AND cost_nano_usd > 0"
        )
        .await,
        1
    );
    // And the conversation still got its fallback title.
    let stored: i64 = count(
        &db,
        "SELECT count(*) FROM conversations WHERE title IS NOT NULL",
    )
    .await;
    assert_eq!(stored, 1, "{id}");
}
