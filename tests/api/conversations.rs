//! Conversations over HTTP: closed by default, owner-scoped, roles respected.

use colloquy::domain::Role;

use crate::helpers::{Backend, TestApp, assert_envelope};
use crate::on_both_backends;

on_both_backends!(create_and_read_back, closed_by_default, owner_only);

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
