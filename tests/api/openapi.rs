//! `/openapi.json` is valid OpenAPI 3.1, matches the committed snapshot, and every path it
//! lists is served by the router (and `/docs` serves Swagger UI offline).

use std::collections::BTreeSet;

use crate::helpers::{Backend, TestApp};

const SNAPSHOT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/api/snapshots/openapi.json"
);

/// Every `$ref` in the document must point at something that exists.
fn check_refs(value: &serde_json::Value, doc: &serde_json::Value, at: &str) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(target)) = map.get("$ref") {
                let pointer = target
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("external ref {target} at {at}"));
                assert!(
                    doc.pointer(pointer).is_some(),
                    "dangling $ref {target} at {at}"
                );
            }
            for (k, v) in map {
                check_refs(v, doc, &format!("{at}/{k}"));
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_refs(v, doc, &format!("{at}/{i}"));
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn openapi_is_valid_matches_snapshot_and_router() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let text = app
        .get("/openapi.json")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();

    // Valid: parses as an OpenAPI 3.1 document, and every reference resolves.
    let spec = oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    check_refs(&doc, &doc, "#");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    // Closed by default, with the public routes marked as such.
    assert_eq!(
        doc["security"],
        serde_json::json!([{"bearer": []}, {"api_key": []}])
    );
    for public in ["/health", "/ready"] {
        assert_eq!(
            doc["paths"][public]["get"]["security"],
            serde_json::json!([]),
            "{public}"
        );
    }
    assert!(
        doc["paths"]["/v1/api-keys"]["get"]
            .get("security")
            .is_none()
    );

    // Every operation documents its errors with the envelope.
    let methods = ["get", "post", "put", "patch", "delete"];
    let mut operation_ids: BTreeSet<String> = BTreeSet::new();
    let paths = doc["paths"].as_object().unwrap();
    let mut routed = BTreeSet::new();
    for (path, item) in paths {
        for method in methods.iter().filter(|m| item.get(**m).is_some()) {
            let op = &item[*method];
            assert!(
                op["responses"]["default"].is_object(),
                "{method} {path} documents errors"
            );
            routed.insert(format!("{} {path}", method.to_uppercase()));
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            assert!(
                operation_ids.insert(id.clone()),
                "operationId {id} is unique"
            );
            for param in op["parameters"].as_array().into_iter().flatten() {
                if param["in"] == "path" {
                    let name = param["name"].as_str().unwrap();
                    assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: path parameter {name} is in the path"
                    );
                }
            }
            let openai = path == "/v1/chat/completions" || path.starts_with("/v1/models");
            if openai {
                // The OpenAI-compatible routes: every error in OpenAI's shape.
                assert_eq!(
                    op["responses"]["default"]["$ref"], "#/components/responses/OpenAiError",
                    "{method} {path}"
                );
                assert_eq!(
                    op["responses"]["429"]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/OpenAiErrorEnvelope",
                    "{method} {path}"
                );
            }
            if path.starts_with("/v1/") {
                // Limited routes document the bucket's headers and the 429.
                if !openai {
                    assert_eq!(
                        op["responses"]["429"]["$ref"], "#/components/responses/RateLimited",
                        "{method} {path}"
                    );
                }
                let ok = op["responses"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .find(|(s, _)| s.starts_with('2'))
                    .unwrap()
                    .1;
                assert!(
                    ok["headers"]["RateLimit-Remaining"].is_object(),
                    "{method} {path}"
                );
            }
            // The router serves it: not the fallback's 404, not a 405.
            let concrete = path
                .replace("{id}", &uuid::Uuid::now_v7().to_string())
                .replace("{model}", "openai/gpt-4o-mini");
            let response = app
                .client
                .request(method.to_uppercase().parse().unwrap(), app.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path} is routed");
            assert!(
                !(status == 404 && body.contains("route ")),
                "{method} {path} is routed: {body}"
            );
        }
    }
    let expected: BTreeSet<String> = [
        "GET /health",
        "GET /ready",
        "POST /v1/conversations",
        "GET /v1/conversations",
        "GET /v1/conversations/{id}",
        "PATCH /v1/conversations/{id}",
        "DELETE /v1/conversations/{id}",
        "GET /v1/conversations/{id}/messages",
        "GET /v1/search",
        "GET /v1/me/export",
        "DELETE /v1/me",
        "DELETE /v1/admin/users/{user_id}",
        "GET /v1/usage",
        "GET /v1/admin/usage",
        "GET /v1/me/budget",
        "GET /v1/admin/users/{user_id}/budget",
        "PUT /v1/admin/users/{user_id}/budget",
        "DELETE /v1/admin/users/{user_id}/budget",
        "POST /v1/api-keys",
        "GET /v1/api-keys",
        "DELETE /v1/api-keys/{id}",
        "POST /v1/files",
        "GET /v1/files",
        "GET /v1/files/{id}",
        "DELETE /v1/files/{id}",
        "GET /v1/files/{id}/content",
        "GET /v1/files/{id}/text",
        "GET /v1/specialists",
        "POST /v1/chat/send",
        "POST /v1/chat/stream",
        "GET /v1/chat/stream/{message_id}",
        "POST /v1/chat/completions",
        "GET /v1/models",
        "GET /v1/models/{model}",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(
        routed, expected,
        "the documented routes are exactly the router's API routes"
    );

    // The snapshot: a changed API shows up as a reviewed diff. UPDATE_SNAPSHOTS=1 rewrites it.
    let pretty = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    if std::env::var("UPDATE_SNAPSHOTS").is_ok() {
        std::fs::write(SNAPSHOT, &pretty).unwrap();
    }
    let snapshot = std::fs::read_to_string(SNAPSHOT)
        .expect("snapshot exists; run with UPDATE_SNAPSHOTS=1 to create");
    assert_eq!(
        pretty, snapshot,
        "OpenAPI changed; review and run with UPDATE_SNAPSHOTS=1"
    );
}

#[tokio::test]
async fn docs_are_served_offline() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let redirect = app.get("/docs").send().await.unwrap();
    assert!(redirect.status().is_redirection());
    let page = app.get("/docs/").send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger"), "{html}");
    // The bundle is vendored into the binary: no CDN.
    assert!(
        !html.contains("unpkg.com") && !html.contains("cdn."),
        "{html}"
    );
    let init = app
        .get("/docs/swagger-initializer.js")
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
    assert!(init.text().await.unwrap().contains("/openapi.json"));
    let bundle = app.get("/docs/swagger-ui-bundle.js").send().await.unwrap();
    assert_eq!(bundle.status(), 200);
}
