//! The chat page's files over real connections: served from the binary with their own CSP
//! and revalidation, and the development token route present in development (where its
//! token works) and absent in production.

use serde_json::Value;

use crate::helpers::{Backend, TestApp};

#[tokio::test]
async fn the_page_and_its_files_are_served_with_their_own_csp() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    for (path, kind, marker) in [
        ("/", "text/html", "<script type=\"module\" src=\"/app.js\">"),
        ("/app.js", "text/javascript", "getReader()"),
        ("/app.css", "text/css", "prefers-color-scheme"),
    ] {
        let response = app.get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["cache-control"], "no-cache");
        let body = response.text().await.unwrap();
        assert!(body.contains(marker), "{path}");
        // No inline script or style, and nothing from another origin.
        if path == "/" {
            assert!(
                !body.contains("<script>") && !body.contains("style="),
                "{path}"
            );
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{path}"
            );
        }
        // Revalidation: the same ETag is a 304 with no body.
        let etag = headers["etag"].clone();
        let again = app
            .get(path)
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert!(again.text().await.unwrap().is_empty());
    }
    // The API keeps its own strict policy.
    let api = app.get("/health").send().await.unwrap();
    assert_eq!(
        api.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
    );
}

#[tokio::test]
async fn the_development_token_signs_in_the_development_user() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let head = app.client.head(app.url("/dev/token")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let response = app.get("/dev/token").send().await.unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    let specialists = app.get_json("/v1/specialists", token).await;
    assert!(!specialists["data"].as_array().unwrap().is_empty());
    let created: Value = app
        .post("/v1/conversations")
        .bearer_auth(token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        created["id"].is_string(),
        "the development user may chat: {created}"
    );
}

#[tokio::test]
async fn production_has_the_page_but_no_development_token() {
    let Some(app) = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("COLLOQUY_ENV", "production"),
            (
                "COLLOQUY_JWT_SECRET",
                "a-production-secret-of-at-least-32-bytes!",
            ),
            ("COLLOQUY_AUTH__USER_HASH_PEPPER", "a-production-pepper"),
            ("COLLOQUY_DATABASE__ALLOW_SQLITE_IN_PRODUCTION", "true"),
        ],
    )
    .await
    else {
        return;
    };
    assert_eq!(app.get("/").send().await.unwrap().status(), 200);
    let response = app.get("/dev/token").send().await.unwrap();
    assert_eq!(response.status(), 404);
    let head = app.client.head(app.url("/dev/token")).send().await.unwrap();
    assert_eq!(head.status(), 404);
}

#[tokio::test]
async fn no_development_token_with_a_secret_of_ones_own_or_another_environment() {
    for env in [
        &[(
            "COLLOQUY_JWT_SECRET",
            "an-operator-secret-of-at-least-32-bytes",
        )][..],
        &[("COLLOQUY_ENV", "staging")][..],
    ] {
        let Some(app) = TestApp::spawn_with(Backend::Sqlite, env).await else {
            return;
        };
        assert_eq!(app.get("/").send().await.unwrap().status(), 200);
        assert_eq!(
            app.get("/dev/token").send().await.unwrap().status(),
            404,
            "{env:?}"
        );
    }
}
