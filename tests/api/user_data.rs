//! A user's data as a whole, on both databases: the export holds exactly the caller's data
//! and streams it; erasure (by the user, or an admin) leaves nothing of them in any table or
//! in file storage, and nothing of anyone else is touched.

use colloquy::domain::{MessageRole, Role};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, Storage, TestApp, assert_envelope, count, eventually_count, storage_overrides,
};
use crate::on_both_backends;
use crate::store::message;

on_both_backends!(
    export_holds_exactly_the_callers_data,
    erasing_yourself_leaves_nothing,
    an_admin_erases_a_user
);

/// Messages in one of alice's conversations: more than one page of the export.
const LONG: i64 = 620;

struct Seeded {
    token: String,
    api_key: String,
    file_id: String,
}

async fn app(backend: Backend, dir: &std::path::Path) -> Option<TestApp> {
    let mut env = storage_overrides(Storage::Local, dir).await.unwrap();
    env.push(("COLLOQUY_CHAT__USAGE_FLUSH_MS".into(), "20".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestApp::spawn_with(backend, &env).await
}

/// A user with a chatted conversation (usage rows, a title call, an idempotency key), a
/// long soft-deleted conversation (alice only), a file and an API key.
async fn seed(app: &TestApp, who: &str, long: bool) -> Seeded {
    let token = app.token_for(who, Some(&format!("{who}@example.com")), Role::User);
    let sent = app
        .post("/v1/chat/send")
        .bearer_auth(&token)
        .header("idempotency-key", format!("key-of-{who}"))
        .json(&json!({"specialist_id": "general", "message": format!("the secret plans of {who}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    if long {
        let created: Value = app
            .post("/v1/conversations")
            .bearer_auth(&token)
            .json(&json!({"title": format!("diary of {who}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
        for n in 0..LONG {
            let text = format!("entry {n} by {who}");
            app.store
                .append_message(&message(id, MessageRole::User, &text))
                .await
                .unwrap();
        }
        let deleted = app
            .client
            .delete(app.url(&format!("/v1/conversations/{id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 204);
    }
    // An admin gave them a budget of their own.
    let budget = app
        .client
        .put(app.url(&format!("/v1/admin/users/{who}/budget")))
        .bearer_auth(app.token("root", Role::Admin))
        .json(&json!({"monthly_nano_usd": 1_000_000_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(budget.status(), 200);
    let name = format!("notes-of-{who}.txt");
    let uploaded = app
        .upload(
            &token,
            &[(
                Some(name.as_str()),
                Some("text/plain"),
                format!("notes of {who}").as_bytes(),
            )],
        )
        .await;
    assert_eq!(uploaded.status(), 201);
    let uploaded: Value = uploaded.json().await.unwrap();
    let file_id = uploaded["data"][0]["id"].as_str().unwrap().to_owned();
    let key: Value = app
        .post("/v1/api-keys")
        .bearer_auth(&token)
        .json(&json!({"name": format!("key of {who}")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Seeded {
        token,
        api_key: key["secret"].as_str().unwrap().to_owned(),
        file_id,
    }
}

async fn export(app: &TestApp, token: &str) -> (String, Value) {
    let response = app
        .get("/v1/me/export")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment"),
    );
    let raw = response.text().await.unwrap();
    let doc = serde_json::from_str(&raw).expect("the export is one JSON document");
    (raw, doc)
}

async fn export_holds_exactly_the_callers_data(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(app) = app(backend, dir.path()).await else {
        return;
    };
    let alice = seed(&app, "alice", true).await;
    let bob = seed(&app, "bob", false).await;
    // Chat and title calls of both users are written.
    eventually_count(&app.db, "SELECT count(*) FROM usage_logs", 4).await;

    let (raw, doc) = export(&app, &alice.token).await;
    assert!(!raw.contains("bob"), "nothing of bob's");
    assert_eq!(doc["format"], "colloquy-export/1");
    assert_eq!(doc["user_id"], "alice");
    let conversations = doc["conversations"].as_array().unwrap();
    assert_eq!(
        conversations.len() as i64,
        count(
            &app.db,
            "SELECT count(*) FROM conversations WHERE owner = 'alice'"
        )
        .await
    );
    assert_eq!(conversations.len(), 2);
    // The deleted diary is there, whole and in order, across export pages.
    let diary = conversations
        .iter()
        .find(|c| c["title"] == "diary of alice")
        .unwrap();
    assert!(diary["deleted_at"].is_string());
    let entries = diary["messages"].as_array().unwrap();
    assert_eq!(entries.len() as i64, LONG);
    for (n, m) in entries.iter().enumerate() {
        assert_eq!(m["seq"], n as i64 + 1);
        assert_eq!(m["content"], format!("entry {n} by alice"));
    }
    let chat = conversations
        .iter()
        .find(|c| c["deleted_at"].is_null())
        .unwrap();
    let said: Vec<&str> = chat["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(said, ["user", "assistant"]);
    assert_eq!(chat["messages"][0]["content"], "the secret plans of alice");

    let files = doc["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["id"], alice.file_id.as_str());
    assert_eq!(files[0]["name"], "notes-of-alice.txt");
    // Every usage row of alice's (the chat and the title call), none of bob's.
    let usage = doc["usage"].as_array().unwrap();
    let alices = count(
        &app.db,
        "SELECT count(*) FROM usage_logs WHERE conversation_id IN (SELECT id FROM conversations WHERE owner = 'alice')",
    )
    .await;
    assert_eq!(usage.len() as i64, alices);
    assert_eq!(alices, 2);
    assert!(usage.iter().all(|u| u["conversation_id"] == chat["id"]));
    let keys = doc["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert!(
        alice
            .api_key
            .starts_with(keys[0]["prefix"].as_str().unwrap())
    );
    assert!(!raw.contains(&alice.api_key), "never the secret");

    // Bob's is his.
    let (raw, doc) = export(&app, &bob.token).await;
    assert!(!raw.contains("alice"));
    assert_eq!(doc["conversations"].as_array().unwrap().len(), 1);
}

/// Rows anywhere that belong to `who` or hold their words.
async fn traces(app: &TestApp, who: &str) -> Vec<(&'static str, i64)> {
    let db = &app.db;
    let (owner, content, usage, fts): (&str, &str, &str, Option<&str>) = match who {
        "alice" => (
            "SELECT (SELECT count(*) FROM conversations WHERE owner = 'alice') + (SELECT count(*) FROM files WHERE owner = 'alice') + (SELECT count(*) FROM api_keys WHERE owner = 'alice') + (SELECT count(*) FROM idempotency_keys WHERE owner = 'alice') + (SELECT count(*) FROM budgets WHERE user_id = 'alice')",
            "SELECT count(*) FROM messages WHERE content LIKE '%alice%'",
            "SELECT count(*) FROM usage_logs WHERE conversation_id IS NULL OR conversation_id NOT IN (SELECT id FROM conversations)",
            Some("SELECT count(*) FROM messages_fts WHERE content LIKE '%alice%'"),
        ),
        _ => (
            "SELECT (SELECT count(*) FROM conversations WHERE owner = 'bob') + (SELECT count(*) FROM files WHERE owner = 'bob') + (SELECT count(*) FROM api_keys WHERE owner = 'bob') + (SELECT count(*) FROM idempotency_keys WHERE owner = 'bob') + (SELECT count(*) FROM budgets WHERE user_id = 'bob')",
            "SELECT count(*) FROM messages WHERE content LIKE '%bob%'",
            "SELECT count(*) FROM usage_logs WHERE conversation_id IS NULL OR conversation_id NOT IN (SELECT id FROM conversations)",
            Some("SELECT count(*) FROM messages_fts WHERE content LIKE '%bob%'"),
        ),
    };
    let mut out = vec![
        ("owned rows", count(db, owner).await),
        ("messages", count(db, content).await),
        ("orphan usage rows", count(db, usage).await),
    ];
    if app.db.backend == Backend::Sqlite {
        out.push(("search index", count(db, fts.unwrap()).await));
    }
    out
}

/// Files in storage (the bytes and any cached text).
fn stored_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}

async fn erasing_yourself_leaves_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(app) = app(backend, dir.path()).await else {
        return;
    };
    let alice = seed(&app, "alice", true).await;
    let bob = seed(&app, "bob", false).await;
    eventually_count(&app.db, "SELECT count(*) FROM usage_logs", 4).await;
    let bob_before = traces(&app, "bob").await;
    let erase = |auth: String, body: Value| {
        app.client
            .delete(app.url("/v1/me"))
            .header("authorization", auth)
            .json(&body)
            .send()
    };

    // Refused: no confirmation, the wrong one, an API key.
    let bearer = format!("Bearer {}", alice.token);
    assert_envelope(
        erase(bearer.clone(), json!({})).await.unwrap(),
        422,
        "invalid_field",
    )
    .await;
    assert_envelope(
        erase(bearer.clone(), json!({"confirm": "bob"}))
            .await
            .unwrap(),
        422,
        "invalid_field",
    )
    .await;
    assert_envelope(
        erase(
            format!("Bearer {}", alice.api_key),
            json!({"confirm": "alice"}),
        )
        .await
        .unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) FROM conversations WHERE owner = 'alice'"
        )
        .await,
        2
    );

    let response = erase(bearer, json!({"confirm": "alice"})).await.unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(
        report,
        json!({"conversations": 2, "messages": LONG + 2, "files": 1, "api_keys": 1, "usage_logs": 2, "idempotency_keys": 1, "budgets": 1})
    );
    for (what, n) in traces(&app, "alice").await {
        assert_eq!(n, 0, "{what} of alice left");
    }
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM messages").await,
        2,
        "bob's two"
    );
    // Her bytes are gone from storage; bob's are there.
    let files = stored_files(dir.path());
    assert!(
        !files.iter().any(|f| f.contains(&alice.file_id)),
        "{files:?}"
    );
    assert!(files.iter().any(|f| f.contains(&bob.file_id)), "{files:?}");
    // Her key no longer opens anything; her export is empty.
    let refused = app
        .get("/v1/conversations")
        .bearer_auth(&alice.api_key)
        .send()
        .await
        .unwrap();
    assert_envelope(refused, 401, "unauthorized").await;
    let (_, doc) = export(&app, &alice.token).await;
    assert_eq!(
        (
            doc["conversations"].as_array().unwrap().len(),
            doc["files"].as_array().unwrap().len(),
            doc["usage"].as_array().unwrap().len()
        ),
        (0, 0, 0)
    );
    // Bob is untouched.
    assert_eq!(traces(&app, "bob").await, bob_before);
    assert_eq!(
        app.get_json("/v1/conversations", &bob.token).await["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn an_admin_erases_a_user(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(app) = app(backend, dir.path()).await else {
        return;
    };
    let alice = seed(&app, "alice", false).await;
    let bob = seed(&app, "bob", false).await;
    eventually_count(&app.db, "SELECT count(*) FROM usage_logs", 4).await;
    let admin = app.token_for("root", Some("root@example.com"), Role::Admin);
    let erase = |token: &str, body: Value| {
        app.client
            .delete(app.url("/v1/admin/users/bob"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    assert_envelope(
        erase(&alice.token, json!({"confirm": "bob"}))
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_envelope(
        erase(&admin, json!({"confirm": "alice"})).await.unwrap(),
        422,
        "invalid_field",
    )
    .await;
    let response = erase(
        &admin,
        json!({"confirm": "bob", "email": "bob@example.com"}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["conversations"], 1);
    assert_eq!(report["usage_logs"], 2);
    for (what, n) in traces(&app, "bob").await {
        assert_eq!(n, 0, "{what} of bob left");
    }
    assert!(
        !stored_files(dir.path())
            .iter()
            .any(|f| f.contains(&bob.file_id))
    );
    // Alice keeps everything.
    assert_eq!(
        count(
            &app.db,
            "SELECT count(*) FROM conversations WHERE owner = 'alice'"
        )
        .await,
        1
    );
    assert_eq!(count(&app.db, "SELECT count(*) FROM usage_logs").await, 2);
}
