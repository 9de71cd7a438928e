//! The OpenAPI document's frame: info, the error-code table, security scheme, and the
//! envelope as the default response of every operation.

use std::collections::BTreeMap;
use utoipa::OpenApi;

use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi as OpenApiDoc, Ref, RefOr, ResponseBuilder};

use crate::error::{ERROR_CODES, ErrorBody, ErrorEnvelope};

#[derive(OpenApi)]
#[openapi(
    info(title = "Colloquy", description = "Self-hosted chat API server for LLM specialists."),
    components(schemas(ErrorEnvelope, ErrorBody)),
    paths(crate::http::openai::model),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "conversations", description = "Conversations and their messages"),
        (name = "api-keys", description = "API keys for programs"),
        (name = "files", description = "Uploads for the chat: exact types, owner-only"),
        (name = "chat", description = "Specialists, and answers whole or streamed"),
        (name = "usage", description = "What your calls used and cost"),
        (name = "budgets", description = "Monthly spend caps"),
        (name = "admin", description = "Managing other users: usage, budgets, erasure"),
        (name = "openai", description = "OpenAI-compatible: Chat Completions and models, for OpenAI's SDKs; errors in OpenAI's shape `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`"),
    )
)]
pub struct ApiDoc;

/// Completes the document once the route list has added its paths: the error-code table,
/// the security schemes (required everywhere but on the public paths), and the envelope as
/// every operation's default response.
pub fn finish(openapi: &mut OpenApiDoc, public_paths: &[&str]) {
    let mut table = String::from(
        "\n\nEvery error is `{\"error\": {\"code\", \"message\", \"request_id\", \"details\"?}}`. Codes:\n\n| code | status | meaning |\n|---|---|---|\n",
    );
    for (code, status, meaning) in ERROR_CODES {
        table.push_str(&format!("| `{code}` | {status} | {meaning} |\n"));
    }
    let description = openapi.info.description.get_or_insert_with(String::new);
    description.push_str(&table);

    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT or API key (ck_...)")
                .build(),
        ),
    );
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
    );
    components.responses.insert(
        "Error".to_owned(),
        RefOr::T(
            ResponseBuilder::new()
                .description("Any error, in the envelope; see the code table")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                        .build(),
                )
                .build(),
        ),
    );
    components.responses.insert(
        "OpenAiError".to_owned(),
        RefOr::T(
            ResponseBuilder::new()
                .description("Any error, in OpenAI's shape")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("OpenAiErrorEnvelope")))
                        .build(),
                )
                .build(),
        ),
    );
    // Limited routes: the bucket's headers on answers, and 429 with Retry-After.
    for (name, description) in RATE_LIMIT_HEADERS {
        let mut header = Header::new(ObjectBuilder::new().schema_type(Type::Integer));
        header.description = Some((*description).to_owned());
        components
            .headers
            .insert((*name).to_owned(), RefOr::T(header));
    }
    let mut limited = ResponseBuilder::new()
        .description("`rate_limited`: the bucket is empty; retry after `Retry-After` seconds")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                .build(),
        )
        .build();
    limited.headers = header_refs(true);
    components
        .responses
        .insert("RateLimited".to_owned(), RefOr::T(limited));
    openapi.info.license = None;

    // Closed by default: every operation needs one of the schemes...
    openapi.security = Some(vec![
        SecurityRequirement::new("bearer", Vec::<String>::new()),
        SecurityRequirement::new("api_key", Vec::<String>::new()),
    ]);
    for (path, item) in openapi.paths.paths.iter_mut() {
        let public = public_paths.contains(&path.as_str());
        let openai = crate::http::openai::errors::owns(path);
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            add_default_error(op, openai);
            // ...except the public allow-list, marked with an empty requirement list.
            if public {
                op.security = Some(Vec::new());
                continue;
            }
            for (status, response) in op.responses.responses.iter_mut() {
                if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
                    response.headers.extend(header_refs(false));
                }
            }
            // The OpenAI-compatible operations list their own 429 (two kinds, another shape).
            if !openai {
                op.responses
                    .responses
                    .entry("429".to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name("RateLimited")));
            }
        }
    }
}

const RATE_LIMIT_HEADERS: &[(&str, &str)] = &[
    (
        "RateLimit-Limit",
        "The bucket's capacity for this route class.",
    ),
    ("RateLimit-Remaining", "Requests left in the bucket now."),
    ("RateLimit-Reset", "Seconds until the bucket is full again."),
    (
        "X-RateLimit-Limit",
        "Same as RateLimit-Limit (the old backend's name).",
    ),
    ("X-RateLimit-Remaining", "Same as RateLimit-Remaining."),
    ("X-RateLimit-Reset", "Same as RateLimit-Reset."),
    (
        "Retry-After",
        "On 429: whole seconds until a request is admitted.",
    ),
];

fn header_refs(with_retry_after: bool) -> BTreeMap<String, RefOr<Header>> {
    RATE_LIMIT_HEADERS
        .iter()
        .filter(|(name, _)| with_retry_after || *name != "Retry-After")
        .map(|(name, _)| {
            (
                (*name).to_owned(),
                RefOr::Ref(Ref::new(format!("#/components/headers/{name}"))),
            )
        })
        .collect()
}

fn add_default_error(op: &mut Operation, openai: bool) {
    let name = if openai { "OpenAiError" } else { "Error" };
    op.responses
        .responses
        .entry("default".to_owned())
        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
}
