//! Every refusal is the JSON envelope with a stable code and the request id.

use colloquy::domain::Role;
use futures_util::StreamExt;

use crate::helpers::{Backend, TestApp, assert_envelope};
use crate::on_both_backends;

on_both_backends!(
    unknown_route_404,
    wrong_method_405,
    oversized_body_413,
    bad_bodies
);

async fn unknown_route_404(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    for path in ["/nope", "/v1/nope", "/v2/chat/send"] {
        let response = app.get(path).send().await.unwrap();
        assert_envelope(response, 404, "not_found").await;
    }
}

async fn wrong_method_405(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let response = app.client.delete(app.url("/health")).send().await.unwrap();
    let allow = response
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        allow.is_some_and(|a| a.contains("GET")),
        "Allow header kept"
    );
    assert_envelope(response, 405, "method_not_allowed").await;
}

async fn oversized_body_413(backend: Backend) {
    let Some(app) =
        TestApp::spawn_with(backend, &[("COLLOQUY_SERVER__BODY_LIMIT_BYTES", "1024")]).await
    else {
        return;
    };
    let token = app.token("u1", Role::User);
    let big = format!("{{\"title\": \"{}\"}}", "x".repeat(4096));
    // Declared length over the limit: refused before routing, auth or parsing.
    let response = app
        .post("/v1/conversations")
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_envelope(response, 413, "payload_too_large").await;
    // Streamed (chunked, no Content-Length): refused while reading.
    let stream = futures_util::stream::iter(
        big.into_bytes()
            .chunks(512)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = app
        .post("/v1/conversations")
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_envelope(response, 413, "payload_too_large").await;
}

/// One bad body and the refusal it must get.
struct Case {
    content_type: Option<&'static str>,
    body: String,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
    why: &'static str,
}

async fn bad_bodies(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let token = app.token("u1", Role::User);
    let cases = [
        Case {
            content_type: None,
            body: "{\"title\": \"a\"}".to_owned(),
            status: 415,
            code: "unsupported_media_type",
            field: None,
            why: "no content type",
        },
        Case {
            content_type: Some("text/plain"),
            body: "{\"title\": \"a\"}".to_owned(),
            status: 415,
            code: "unsupported_media_type",
            field: None,
            why: "text/plain",
        },
        Case {
            content_type: Some("application/json"),
            body: "{\"title\": ".to_owned(),
            status: 400,
            code: "malformed_json",
            field: None,
            why: "truncated JSON",
        },
        Case {
            content_type: Some("application/json"),
            body: "not json".to_owned(),
            status: 400,
            code: "malformed_json",
            field: None,
            why: "not JSON at all",
        },
        Case {
            content_type: Some("application/json"),
            body: "{} extra".to_owned(),
            status: 400,
            code: "malformed_json",
            field: None,
            why: "trailing bytes",
        },
        Case {
            content_type: Some("application/json"),
            body: "".to_owned(),
            status: 400,
            code: "malformed_json",
            field: None,
            why: "empty body",
        },
        Case {
            content_type: Some("application/json"),
            body: "{\"title\": 42}".to_owned(),
            status: 422,
            code: "invalid_field",
            field: Some("title"),
            why: "wrong type",
        },
        Case {
            content_type: Some("application/json"),
            body: "{\"specialist_id\": [1]}".to_owned(),
            status: 422,
            code: "invalid_field",
            field: Some("specialist_id"),
            why: "array for string",
        },
        Case {
            content_type: Some("application/json"),
            body: "{\"titel\": \"a\"}".to_owned(),
            status: 422,
            code: "invalid_field",
            field: Some("titel"),
            why: "unknown field",
        },
        Case {
            content_type: Some("application/json"),
            body: "[]".to_owned(),
            status: 422,
            code: "invalid_field",
            field: None,
            why: "array for object",
        },
        Case {
            content_type: Some("application/json"),
            body: format!("{{\"title\": \"{}\"}}", "y".repeat(201)),
            status: 422,
            code: "invalid_field",
            field: Some("title"),
            why: "title too long",
        },
    ];
    for Case {
        content_type,
        body,
        status,
        code,
        field,
        why,
    } in &cases
    {
        let mut request = app
            .post("/v1/conversations")
            .bearer_auth(&token)
            .body(body.to_string());
        if let Some(ct) = content_type {
            request = request.header("content-type", *ct);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), *status, "case: {why}");
        let json = assert_envelope(response, *status, code).await;
        if let Some(field) = field {
            assert_eq!(
                json["error"]["details"]["field"], *field,
                "case: {why}: {json}"
            );
        }
    }
}

/// A request that outlives `server.request_timeout_secs` gets the `timeout` envelope.
#[tokio::test]
async fn slow_request_gets_504_timeout() {
    let Some(app) = TestApp::spawn_with(
        Backend::Sqlite,
        &[("COLLOQUY_SERVER__REQUEST_TIMEOUT_SECS", "1")],
    )
    .await
    else {
        return;
    };
    let token = app.token("u1", Role::User);
    // The body's second half comes only after the deadline (bounded: the stream ends by itself).
    let body = futures_util::stream::iter([0u8, 1]).then(|i| async move {
        if i == 1 {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        }
        Ok::<_, std::io::Error>(if i == 0 {
            b"{\"title\": ".to_vec()
        } else {
            b"\"late\"}".to_vec()
        })
    });
    let response = app
        .post("/v1/conversations")
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_envelope(response, 504, "timeout").await;
}
