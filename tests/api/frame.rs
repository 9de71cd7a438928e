//! The middleware frame: request ids, CORS, security headers, compression.

use crate::helpers::{Backend, TestApp, assert_envelope};
use crate::on_both_backends;

on_both_backends!(
    request_id_kept_or_generated,
    cors_preflight,
    security_headers,
    compression_for_json,
    h2c_is_served
);

async fn request_id_kept_or_generated(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    // A sane incoming id is kept, on success and on error alike.
    for path in ["/health", "/missing"] {
        let response = app
            .get(path)
            .header("x-request-id", "client-id-123")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["x-request-id"],
            "client-id-123",
            "{path}"
        );
    }
    // Missing or insane ids are replaced by a fresh UUIDv7.
    let long = "a".repeat(300);
    for incoming in [None, Some("has spaces"), Some(long.as_str()), Some("")] {
        let mut request = app.get("/health");
        if let Some(id) = incoming {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await.unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap();
        let uuid = uuid::Uuid::parse_str(id).unwrap_or_else(|_| panic!("{incoming:?} → {id}"));
        assert_eq!(uuid.get_version_num(), 7);
    }
    // Two requests never share a generated id.
    let a = app.get("/health").send().await.unwrap().headers()["x-request-id"].clone();
    let b = app.get("/health").send().await.unwrap().headers()["x-request-id"].clone();
    assert_ne!(a, b);
}

async fn cors_preflight(backend: Backend) {
    let Some(app) = TestApp::spawn_with(
        backend,
        &[
            (
                "COLLOQUY_CORS__ALLOWED_ORIGINS",
                "[\"https://chat.example.com\"]",
            ),
            ("COLLOQUY_CORS__MAX_AGE_SECS", "123"),
        ],
    )
    .await
    else {
        return;
    };
    let preflight = |origin: &str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/conversations"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
    };
    let allowed = preflight("https://chat.example.com").send().await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://chat.example.com"
    );
    assert_eq!(allowed.headers()["access-control-max-age"], "123");
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    // A browser picking a stream up again sends Last-Event-ID.
    assert!(headers.contains("last-event-id"), "{headers}");

    let refused = preflight("https://evil.example").send().await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "no grant for a foreign origin"
    );

    // A simple cross-origin request from an allowed origin gets the grant on errors too.
    let response = app
        .get("/missing")
        .header("origin", "https://chat.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://chat.example.com"
    );
    assert_envelope(response, 404, "not_found").await;
}

async fn security_headers(backend: Backend) {
    let Some(app) = TestApp::spawn_with(
        backend,
        &[("COLLOQUY_SECURITY__HSTS_MAX_AGE_SECS", "31536000")],
    )
    .await
    else {
        return;
    };
    for path in ["/health", "/missing", "/openapi.json"] {
        let response = app.get(path).send().await.unwrap();
        let h = response.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("default-src 'none'"),
            "{path}"
        );
        assert_eq!(
            h["strict-transport-security"], "max-age=31536000; includeSubDomains",
            "{path}"
        );
    }
    // The docs page gets a CSP that lets Swagger UI run, and still no framing.
    let docs = app.get("/docs/").send().await.unwrap();
    assert_eq!(docs.status(), 200);
    let csp = docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );

    // Without the setting, no HSTS.
    let Some(plain) = TestApp::spawn(backend).await else {
        return;
    };
    let response = plain.get("/health").send().await.unwrap();
    assert!(
        response
            .headers()
            .get("strict-transport-security")
            .is_none()
    );
}

async fn compression_for_json(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let response = app
        .get("/openapi.json")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let response = app
        .get("/openapi.json")
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "br");
    let response = app.get("/openapi.json").send().await.unwrap();
    assert!(response.headers().get("content-encoding").is_none());
    // A small body is sent as it is: compressing it would cost more than it saves.
    let response = app
        .get("/health")
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-encoding").is_none());
}

/// HTTP/2 without TLS (prior knowledge), as proxies such as Envoy or Caddy speak it to their
/// backends, gets the same answers and frame as HTTP/1.1.
async fn h2c_is_served(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    colloquy::tls::ensure_crypto_provider();
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let response = client.get(app.url("/v1/specialists")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_envelope(response, 401, "unauthorized").await;
}
