//! Conversations over HTTP: closed by default, owner-scoped, roles respected.

use colloquy::domain::{MessageRole, NewMessage, Role, new_id};
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, assert_envelope};
use crate::on_both_backends;

on_both_backends!(
    create_and_read_back,
    closed_by_default,
    owner_only,
    messages_page_newest_first_while_appending,
    messages_page_refusals,
    list_rename_archive_and_delete
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
    let mut conversation = fetched.clone();
    conversation.as_object_mut().unwrap().remove("messages");
    assert_eq!(conversation, created);
    // With its newest page of messages: none yet.
    assert_eq!(
        fetched["messages"],
        serde_json::json!({"data": [], "next_cursor": null, "has_more": false})
    );
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

/// Message `n` of a test conversation: the user's on even numbers, the assistant's on odd.
fn text(conversation_id: Uuid, n: usize) -> NewMessage {
    let role = if n.is_multiple_of(2) {
        MessageRole::User
    } else {
        MessageRole::Assistant
    };
    crate::store::message(conversation_id, role, &format!("message {n}"))
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
    // The conversation itself opens with the same newest page.
    let detail = app
        .get_json(&format!("/v1/conversations/{id}?limit=2"), &token)
        .await;
    assert_eq!(detail["messages"], page);
    assert_eq!(detail["message_count"], 123);
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

async fn list_ids(app: &TestApp, token: &str, query: &str) -> (Vec<String>, serde_json::Value) {
    let page = app
        .get_json(&format!("/v1/conversations?{query}"), token)
        .await;
    let ids = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, page)
}

async fn patch(app: &TestApp, token: &str, id: &str, body: serde_json::Value) -> reqwest::Response {
    app.client
        .patch(app.url(&format!("/v1/conversations/{id}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn delete(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    app.client
        .delete(app.url(&format!("/v1/conversations/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn list_rename_archive_and_delete(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(create_conversation(&app, &alice).await.to_string());
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    // Pages of two, newest activity first, to the end.
    let mut seen = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let (page_ids, page) = list_ids(&app, &alice, &query).await;
        seen.extend(page_ids);
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null());
            break;
        }
        query = format!("limit=2&cursor={}", page["next_cursor"].as_str().unwrap());
    }
    assert_eq!(seen, newest_first);

    // A new message is activity: the oldest conversation comes first.
    app.store
        .append_message(&text(ids[0].parse().unwrap(), 2))
        .await
        .unwrap();
    assert_eq!(
        list_ids(&app, &alice, "limit=1").await.0,
        vec![ids[0].clone()]
    );

    // Archived ones leave the default list for the archived one, and come back.
    let response = patch(&app, &alice, &ids[1], serde_json::json!({"archived": true})).await;
    assert_eq!(response.status(), 200);
    let archived: serde_json::Value = response.json().await.unwrap();
    assert!(archived["archived_at"].is_string());
    // The answer is what the conversation now is, as a read shows it.
    let mut read = app
        .get_json(&format!("/v1/conversations/{}", ids[1]), &alice)
        .await;
    read.as_object_mut().unwrap().remove("messages");
    assert_eq!(read, archived);
    assert!(!list_ids(&app, &alice, "").await.0.contains(&ids[1]));
    assert_eq!(
        list_ids(&app, &alice, "archived=true").await.0,
        vec![ids[1].clone()]
    );
    let response = patch(
        &app,
        &alice,
        &ids[1],
        serde_json::json!({"archived": false}),
    )
    .await;
    assert!(response.json::<serde_json::Value>().await.unwrap()["archived_at"].is_null());
    assert!(list_ids(&app, &alice, "").await.0.contains(&ids[1]));

    // Titles: trimmed, kept when not mentioned, cleared by null, checked.
    let renamed: serde_json::Value = patch(
        &app,
        &alice,
        &ids[2],
        serde_json::json!({"title": "  Plans  "}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(renamed["title"], "Plans");
    let same: serde_json::Value = patch(
        &app,
        &alice,
        &ids[2],
        serde_json::json!({"archived": false}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(same["title"], "Plans");
    let cleared: serde_json::Value =
        patch(&app, &alice, &ids[2], serde_json::json!({"title": null}))
            .await
            .json()
            .await
            .unwrap();
    assert!(cleared["title"].is_null());
    for bad in [
        serde_json::json!({"title": "x".repeat(201)}),
        serde_json::json!({"title": 5}),
        serde_json::json!({"owner": "bob"}),
    ] {
        assert_envelope(
            patch(&app, &alice, &ids[2], bad).await,
            422,
            "invalid_field",
        )
        .await;
    }

    // Deleted: gone from the list, reads, messages and chat; a second delete finds nothing.
    assert_eq!(delete(&app, &alice, &ids[3]).await.status(), 204);
    assert!(!list_ids(&app, &alice, "").await.0.contains(&ids[3]));
    assert!(
        !list_ids(&app, &alice, "archived=true")
            .await
            .0
            .contains(&ids[3])
    );
    for path in [
        format!("/v1/conversations/{}", ids[3]),
        format!("/v1/conversations/{}/messages", ids[3]),
    ] {
        let response = app.get(&path).bearer_auth(&alice).send().await.unwrap();
        assert_envelope(response, 404, "not_found").await;
    }
    let response = app
        .post("/v1/chat/send")
        .bearer_auth(&alice)
        .json(&serde_json::json!({"specialist_id": "general", "message": "hi", "conversation_id": ids[3]}))
        .send()
        .await
        .unwrap();
    assert_envelope(response, 404, "not_found").await;
    assert_envelope(delete(&app, &alice, &ids[3]).await, 404, "not_found").await;
    assert_envelope(
        patch(&app, &alice, &ids[3], serde_json::json!({"title": "back?"})).await,
        404,
        "not_found",
    )
    .await;

    // Another user sees none of it and can change none of it; a viewer changes nothing.
    let bob = app.token("bob", Role::User);
    assert!(list_ids(&app, &bob, "").await.0.is_empty());
    assert_envelope(
        patch(&app, &bob, &ids[4], serde_json::json!({"title": "mine"})).await,
        404,
        "not_found",
    )
    .await;
    assert_envelope(delete(&app, &bob, &ids[4]).await, 404, "not_found").await;
    let viewer = app.token("alice", Role::Viewer);
    assert_eq!(list_ids(&app, &viewer, "").await.0.len(), 4);
    assert_envelope(
        patch(&app, &viewer, &ids[4], serde_json::json!({"title": "x"})).await,
        403,
        "forbidden",
    )
    .await;
    assert_envelope(delete(&app, &viewer, &ids[4]).await, 403, "forbidden").await;

    for query in [
        "cursor=nope",
        "cursor=bm9wZQ",
        "limit=0",
        "archived=maybe",
        "sort=asc",
    ] {
        let response = app
            .get(&format!("/v1/conversations?{query}"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_envelope(response, 422, "invalid_field").await;
    }
}
