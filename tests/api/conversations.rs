//! Conversations over HTTP: closed by default, owner-scoped, roles respected.

use colloquy::domain::ids::now_utc;
use colloquy::domain::{MessageRole, MessageStatus, NewMessage, Role, new_id};
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, assert_envelope};
use crate::on_both_backends;

on_both_backends!(
    create_and_read_back,
    closed_by_default,
    owner_only,
    messages_page_newest_first_while_appending,
    messages_page_refusals
);

async fn create_and_read_back(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let token = app.token("alice", Role::User);
    let response = app
        .post("/v1/conversations")
        .bearer_auth(&token)
        .json(&serde_json::json!({"title": "  Budget review  ", "specialist_id": "analyst"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: serde_json::Value = response.json().await.unwrap();
    assert_eq!(created["title"], "Budget review");
    assert!(created.get("owner").is_none(), "owner is not exposed");
    let id = created["id"].as_str().unwrap();
    let fetched: serde_json::Value = app
        .get(&format!("/v1/conversations/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, created);
    // Persisted, not just echoed.
    let stored = app
        .store
        .get_conversation(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.owner, "alice");
}

async fn closed_by_default(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let body = serde_json::json!({"title": "x"});
    let cases: &[(Option<&str>, &str)] = &[
        (None, "no header"),
        (Some("Basic YWxpY2U6c2VjcmV0"), "basic scheme"),
        (Some("Bearer garbage"), "garbage token"),
        (Some("Bearer "), "empty token"),
    ];
    for (header, why) in cases {
        let mut request = app.post("/v1/conversations").json(&body);
        if let Some(h) = header {
            request = request.header("authorization", *h);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "{why}"
        );
        assert_envelope(response, 401, "unauthorized").await;
    }
    // A token signed with another secret.
    let mut other = app.config.auth.clone();
    other.jwt_secret = colloquy::config::Secret::new("some-other-secret-that-is-long-enough");
    let forged = colloquy::auth::jwt::mint(
        &other,
        &colloquy::auth::jwt::TokenRequest {
            sub: "mallory",
            email: None,
            role: Role::Admin,
            ttl_secs: 60,
        },
    )
    .unwrap();
    let response = app
        .post("/v1/conversations")
        .bearer_auth(forged)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_envelope(response, 401, "unauthorized").await;
    // Viewers read but do not create.
    let viewer = app.token("victor", Role::Viewer);
    let response = app
        .post("/v1/conversations")
        .bearer_auth(viewer)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_envelope(response, 403, "forbidden").await;
}

async fn owner_only(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let bob = app.token("bob", Role::Admin);
    let created: serde_json::Value = app
        .post("/v1/conversations")
        .bearer_auth(&alice)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let response = app
        .get(&format!("/v1/conversations/{id}"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_envelope(response, 404, "not_found").await;
    for bad in ["not-a-uuid", "00000000-0000-0000-0000-000000000000"] {
        let response = app
            .get(&format!("/v1/conversations/{bad}"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_envelope(response, 404, "not_found").await;
    }
}

fn text(conversation_id: Uuid, n: usize) -> NewMessage {
    NewMessage {
        id: new_id(),
        conversation_id,
        role: if n.is_multiple_of(2) {
            MessageRole::User
        } else {
            MessageRole::Assistant
        },
        content: format!("message {n}"),
        attachments: serde_json::json!([]),
        input_tokens: None,
        output_tokens: None,
        status: MessageStatus::Complete,
        created_at: now_utc(),
    }
}

async fn create_conversation(app: &TestApp, token: &str) -> Uuid {
    let created: serde_json::Value = app
        .post("/v1/conversations")
        .bearer_auth(token)
        .json(&serde_json::json!({"specialist_id": "general"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["id"].as_str().unwrap().parse().unwrap()
}

/// Scrolling up through 120 messages, 50 at a time, while new ones keep arriving: every
/// message of the first view is seen exactly once, in order, and the pages end.
async fn messages_page_newest_first_while_appending(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let token = app.token("alice", Role::User);
    let id = create_conversation(&app, &token).await;
    for n in 1..=120 {
        app.store.append_message(&text(id, n)).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<i64> = None;
    let mut pages = 0;
    loop {
        let path = match cursor {
            Some(c) => format!("/v1/conversations/{id}/messages?limit=50&before={c}"),
            None => format!("/v1/conversations/{id}/messages?limit=50"),
        };
        let page = app.get_json(&path, &token).await;
        pages += 1;
        let data = page["data"].as_array().unwrap();
        seen.extend(data.iter().map(|m| m["seq"].as_i64().unwrap()));
        // Appended between two pages: newer than anything still to come, so never seen.
        app.store
            .append_message(&text(id, 1000 + pages))
            .await
            .unwrap();
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null());
            break;
        }
        assert_eq!(page["next_cursor"], data.last().unwrap()["seq"]);
        cursor = page["next_cursor"].as_i64();
        assert!(pages < 10, "pages never end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (1..=120).rev().collect::<Vec<i64>>());
    // The newest page now starts with what was appended meanwhile.
    let page = app
        .get_json(&format!("/v1/conversations/{id}/messages?limit=2"), &token)
        .await;
    assert_eq!(page["data"][0]["seq"], 123);
    assert_eq!(page["data"][0]["content"], "message 1003");
    assert_eq!(page["data"][0]["role"], "assistant");
    assert_eq!(page["next_cursor"], 122);
    assert_eq!(page["has_more"], true);
}

async fn messages_page_refusals(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let id = create_conversation(&app, &alice).await;
    // Someone else's conversation, or none at all: the same 404.
    let bob = app.token("bob", Role::User);
    for (path, token) in [
        (format!("/v1/conversations/{id}/messages"), &bob),
        (format!("/v1/conversations/{}/messages", new_id()), &alice),
    ] {
        let response = app.get(&path).bearer_auth(token).send().await.unwrap();
        assert_envelope(response, 404, "not_found").await;
    }
    for query in [
        "limit=0",
        "limit=201",
        "limit=abc",
        "before=0",
        "before=-5",
        "page=2",
    ] {
        let response = app
            .get(&format!("/v1/conversations/{id}/messages?{query}"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{query}");
        assert_envelope(response, 422, "invalid_field").await;
    }
    // An empty conversation is one empty, last page.
    let page = app
        .get_json(&format!("/v1/conversations/{id}/messages"), &alice)
        .await;
    assert_eq!(
        page,
        serde_json::json!({"data": [], "next_cursor": null, "has_more": false})
    );
}
