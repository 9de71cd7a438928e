//! The OpenAPI document's frame: info, the error-code table, security scheme, and the
//! envelope as the default response of every operation.

use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi as OpenApiDoc, Ref, RefOr, ResponseBuilder};

use crate::error::{ERROR_CODES, ErrorBody, ErrorEnvelope};

#[derive(OpenApi)]
#[openapi(
    info(title = "Colloquy", description = "Self-hosted chat API server for LLM specialists."),
    components(schemas(ErrorEnvelope, ErrorBody)),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "conversations", description = "Conversations and their messages"),
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
    // Closed by default: every operation needs one of the schemes...
    openapi.security = Some(vec![
        SecurityRequirement::new("bearer", Vec::<String>::new()),
        SecurityRequirement::new("api_key", Vec::<String>::new()),
    ]);
    for (path, item) in openapi.paths.paths.iter_mut() {
        let public = public_paths.contains(&path.as_str());
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
            add_default_error(op);
            // ...except the public allow-list, marked with an empty requirement list.
            if public {
                op.security = Some(Vec::new());
            }
        }
    }
}

fn add_default_error(op: &mut Operation) {
    op.responses
        .responses
        .entry("default".to_owned())
        .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Error")));
}
