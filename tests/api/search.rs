//! Search over HTTP on both databases: ranked, owner-scoped, paged, deletion-aware, and
//! unbreakable by hostile queries.

use colloquy::domain::{MessageRole, Role};
use serde_json::Value;

use crate::helpers::{Backend, TestApp, assert_envelope};
use crate::on_both_backends;
use crate::store::message;

on_both_backends!(
    finds_only_the_callers_words,
    pages_without_repeats,
    deleted_conversations_are_not_searched,
    hostile_queries_never_fail
);

async fn conversation(app: &TestApp, token: &str, title: &str) -> uuid::Uuid {
    let created: Value = app
        .post("/v1/conversations")
        .bearer_auth(token)
        .json(&serde_json::json!({"title": title}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["id"].as_str().unwrap().parse().unwrap()
}

async fn say(app: &TestApp, id: uuid::Uuid, role: MessageRole, content: &str) -> uuid::Uuid {
    app.store
        .append_message(&message(id, role, content))
        .await
        .unwrap()
        .id
}

async fn search(app: &TestApp, token: &str, query: &[(&str, &str)]) -> reqwest::Response {
    let url = reqwest::Url::parse_with_params(&app.url("/v1/search"), query).unwrap();
    app.client.get(url).bearer_auth(token).send().await.unwrap()
}

async fn hits(app: &TestApp, token: &str, q: &str) -> Vec<Value> {
    let response = search(app, token, &[("q", q)]).await;
    assert_eq!(response.status(), 200, "q = {q:?}");
    let page: Value = response.json().await.unwrap();
    page["data"].as_array().unwrap().clone()
}

async fn finds_only_the_callers_words(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let bob = app.token("bob", Role::User);
    let pets = conversation(&app, &alice, "Pets").await;
    let fox = say(
        &app,
        pets,
        MessageRole::User,
        "The quick brown fox jumps over the lazy dog",
    )
    .await;
    let afternoon = say(
        &app,
        pets,
        MessageRole::Assistant,
        "A lazy, lazy afternoon <b>indeed</b>",
    )
    .await;
    say(&app, pets, MessageRole::User, "Dogs and cats").await;
    let other = conversation(&app, &bob, "Bob's").await;
    say(&app, other, MessageRole::User, "lazy fox of bob").await;

    // Both of alice's lazy messages, the one that says it twice first; never bob's.
    let found = hits(&app, &alice, "LAZY").await;
    let ids: Vec<&str> = found
        .iter()
        .map(|h| h["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [afternoon.to_string(), fox.to_string()], "{found:#?}");
    assert!(found[0]["score"].as_f64().unwrap() > found[1]["score"].as_f64().unwrap());
    let top = &found[0];
    assert_eq!(top["conversation_id"], pets.to_string());
    assert_eq!(top["conversation_title"], "Pets");
    assert_eq!(top["role"], "assistant");
    assert_eq!(top["seq"], 2);
    assert!(top["created_at"].as_str().unwrap().ends_with('Z'));
    // Marked and escaped: the message's own markup comes back as text.
    assert_eq!(
        top["snippet"],
        "A <mark>lazy</mark>, <mark>lazy</mark> afternoon &lt;b&gt;indeed&lt;/b&gt;"
    );

    // Every word must match; quotes ask for a phrase.
    let ids = |hits: Vec<Value>| -> Vec<String> {
        hits.iter()
            .map(|h| h["message_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(hits(&app, &alice, "quick dog").await),
        [fox.to_string()]
    );
    assert_eq!(
        ids(hits(&app, &alice, "\"lazy dog\"").await),
        [fox.to_string()]
    );
    assert!(hits(&app, &alice, "\"dog lazy\"").await.is_empty());
    assert!(hits(&app, &alice, "lazy cats").await.is_empty());
    // Whole words: "dog" is not "Dogs".
    assert_eq!(ids(hits(&app, &alice, "dog").await), [fox.to_string()]);
    // Addresses, hosts, paths and numbers are found by their parts and whole, on both.
    let joined = say(
        &app,
        pets,
        MessageRole::User,
        "Mail vet@pets.example.com or see https://docs.example.org/care/dogs version 1.2.3 at 3.14pm",
    )
    .await;
    for q in [
        "vet@pets.example.com",
        "example",
        "docs.example.org",
        "care/dogs",
        "1.2.3",
        "3.14pm",
        "https",
    ] {
        assert_eq!(
            ids(hits(&app, &alice, q).await),
            [joined.to_string()],
            "q = {q}"
        );
    }
    // Bob sees his own only.
    assert_eq!(hits(&app, &bob, "lazy").await.len(), 1);
    assert!(hits(&app, &bob, "afternoon").await.is_empty());
}

async fn pages_without_repeats(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let token = app.token("alice", Role::User);
    let mut want = std::collections::BTreeSet::new();
    for c in 0..3 {
        let id = conversation(&app, &token, &format!("c{c}")).await;
        for m in 0..9 {
            // Different lengths and repeats give different ranks, and some ties.
            let text = format!("needle {} hay {m}", "needle ".repeat(m % 3));
            want.insert(say(&app, id, MessageRole::User, &text).await.to_string());
        }
    }
    // Someone else keeps writing the same word between pages: that must not move alice's
    // hits across the cursor (a score that depended on the whole table would).
    let bob = app.token("bob", Role::User);
    let bobs = conversation(&app, &bob, "bob's").await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut last_score = f64::INFINITY;
    for round in 0.. {
        assert!(round < 10, "paging does not end");
        let mut query = vec![("q", "needle".to_owned()), ("limit", "10".to_owned())];
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = search(&app, &token, &query).await;
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        for n in 0..20 {
            let text = format!("needle {}", "padding words ".repeat(n));
            say(&app, bobs, MessageRole::User, &text).await;
        }
        for hit in page["data"].as_array().unwrap() {
            let score = hit["score"].as_f64().unwrap();
            assert!(score <= last_score, "best first across pages");
            last_score = score;
            seen.push(hit["message_id"].as_str().unwrap().to_owned());
        }
        assert_eq!(page["has_more"], page["next_cursor"].is_string());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 27, "every hit once");
    let unique: std::collections::BTreeSet<String> = seen.into_iter().collect();
    assert_eq!(unique, want);
}

async fn deleted_conversations_are_not_searched(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let token = app.token("alice", Role::User);
    let kept = conversation(&app, &token, "kept").await;
    let archived = conversation(&app, &token, "archived").await;
    let deleted = conversation(&app, &token, "deleted").await;
    for id in [kept, archived, deleted] {
        say(&app, id, MessageRole::User, "marmalade sandwich").await;
    }
    let patched = app
        .client
        .patch(app.url(&format!("/v1/conversations/{archived}")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"archived": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let gone = app
        .client
        .delete(app.url(&format!("/v1/conversations/{deleted}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    let mut found: Vec<String> = hits(&app, &token, "marmalade")
        .await
        .iter()
        .map(|h| h["conversation_id"].as_str().unwrap().to_owned())
        .collect();
    found.sort();
    let mut want = vec![kept.to_string(), archived.to_string()];
    want.sort();
    assert_eq!(found, want, "archived stays searchable, deleted does not");
}

async fn hostile_queries_never_fail(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let token = app.token("alice", Role::User);
    let id = conversation(&app, &token, "x").await;
    say(
        &app,
        id,
        MessageRole::User,
        "lazy dog's \"quoted\" text; 100% sure",
    )
    .await;
    let long_word = "a".repeat(10_240);
    let long_punct = "\"*(^:-".repeat(1_707);
    let many_words = "lazy ".repeat(2_048);
    let hostile: Vec<&str> = vec![
        "",
        "   ",
        "\"",
        "\"\"\"",
        "\"lazy",
        "'",
        "'; DROP TABLE messages; --",
        "' OR 1=1 --",
        "lazy' OR '1'='1",
        "%",
        "_",
        "\\",
        "\0",
        "lazy\0dog",
        "*",
        "lazy*",
        "NEAR(lazy dog)",
        "lazy AND",
        "OR",
        "NOT lazy",
        "-lazy",
        "!lazy",
        "lazy & | ! <->",
        "lazy:*",
        "content:lazy",
        "message_id:1",
        "^lazy",
        "{lazy dog}",
        "(((((",
        "🦀🦀",
        "\u{202e}lazy",
        "e\u{301}",
        "\u{feff}",
        "ﷺ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "<script>alert(1)</script>",
        &long_word,
        &long_punct,
        &many_words,
    ];
    for q in hostile {
        let response = search(&app, &token, &[("q", q)]).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            status,
            200,
            "q = {:?}: {body}",
            q.chars().take(40).collect::<String>()
        );
        assert!(body["data"].is_array(), "{body}");
    }
    // Still all there, and the SQL in the query was only words.
    assert_eq!(hits(&app, &token, "lazy").await.len(), 1);
    assert_eq!(hits(&app, &token, "'lazy' --;").await.len(), 1);
    assert_eq!(hits(&app, &token, "quoted").await.len(), 1);
    // What is wrong with the request itself is a 422.
    assert_envelope(search(&app, &token, &[]).await, 422, "invalid_field").await;
    assert_envelope(
        search(&app, &token, &[("q", "lazy"), ("cursor", "not-a-cursor")]).await,
        422,
        "invalid_field",
    )
    .await;
    assert_envelope(
        search(&app, &token, &[("q", "lazy"), ("limit", "0")]).await,
        422,
        "invalid_field",
    )
    .await;
    assert_envelope(
        search(&app, &token, &[("q", "lazy"), ("sort", "x")]).await,
        422,
        "invalid_field",
    )
    .await;
}
