//! `/health` and `/ready`, including a sabotaged database and Redis.

use crate::helpers::{Backend, TestApp, assert_envelope, reachable_redis};
use crate::on_both_backends;

on_both_backends!(
    health_is_ok,
    ready_is_ok,
    ready_503_when_database_is_gone,
    ready_checks_redis
);

async fn health_is_ok(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let response = app.get("/health").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    app.shutdown().await;
}

async fn ready_is_ok(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let response = app.get("/ready").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(
        body["providers"]["mock"], "closed",
        "breaker states are reported: {body}"
    );
    assert!(
        body["checks"].get("redis").is_none(),
        "redis not configured: {body}"
    );
    app.shutdown().await;
}

async fn ready_503_when_database_is_gone(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    assert_eq!(app.get("/ready").send().await.unwrap().status(), 200);
    match backend {
        // The database is dropped under the running server, its connections killed.
        Backend::Postgres => app.db.sabotage().await,
        // A file database cannot vanish under open handles; closing the pool is the
        // nearest sabotage.
        Backend::Sqlite => app.store.close().await,
    }
    let response = app.get("/ready").send().await.unwrap();
    let body = assert_envelope(response, 503, "not_ready").await;
    assert_ne!(
        body["error"]["details"]["checks"]["database"], "ok",
        "{body}"
    );
    let text = body.to_string();
    assert!(
        !text.contains(&app.db.url) && !text.contains("postgres://"),
        "no URLs leak: {text}"
    );
    // Liveness does not depend on the database.
    assert_eq!(app.get("/health").send().await.unwrap().status(), 200);
}

async fn ready_checks_redis(backend: Backend) {
    let Some(redis) = reachable_redis().await else {
        return;
    };
    let Some(app) = TestApp::spawn_with(backend, &[("REDIS_URL", redis.as_str())]).await else {
        return;
    };
    let response = app.get("/ready").send().await.unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        status, 200,
        "real Redis at TEST_REDIS_URL must answer: {body}"
    );
    assert_eq!(body["checks"]["redis"], "ok");
    app.shutdown().await;

    // Nothing listens on port 1: Redis is named as the failing dependency.
    let Some(app) =
        TestApp::spawn_with(backend, &[("REDIS_URL", "redis://:hunter2@127.0.0.1:1")]).await
    else {
        return;
    };
    let response = app.get("/ready").send().await.unwrap();
    let body = assert_envelope(response, 503, "not_ready").await;
    assert_eq!(body["error"]["details"]["checks"]["database"], "ok");
    assert_ne!(body["error"]["details"]["checks"]["redis"], "ok");
    assert!(!body.to_string().contains("hunter2"));
    app.shutdown().await;
}
