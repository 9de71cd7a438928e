//! The HTTP surface: the one route list (utoipa-axum, so the router and the OpenAPI
//! document come from the same list) and `build_app`.

pub mod auth;
mod edges;
pub mod extract;
pub mod layers;
pub mod limits;
pub mod openai;
mod openapi;
pub mod request_id;
pub mod routes;
pub mod sse;
pub mod trace_context;
mod web;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, Uri, header};
use axum::middleware;
use axum::routing::get;
use bytes::Bytes;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::state::AppState;

pub use openapi::ApiDoc;

/// Routes anyone may call: the explicit public allow-list (and the chat page's own files
/// and development token, `web::routes`, which are not API routes). Everything else is
/// protected.
pub const PUBLIC_PATHS: &[&str] = &["/health", "/ready", "/openapi.json", "/docs"];

/// The CSP of the docs page: Swagger UI needs its own scripts and inline styles.
const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Builds the whole application: routes, OpenAPI, docs and the layer stack.
pub fn build_app(state: AppState) -> Router {
    let (router, mut openapi) = route_list(&state).split_for_parts();
    openapi::finish(&mut openapi, PUBLIC_PATHS);
    // Rendered once; every request gets the same bytes.
    let spec = Bytes::from(openapi.to_json().unwrap_or_default());
    let docs: Router<AppState> = Router::from(
        SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/openapi.json")),
    )
    .layer(SetResponseHeaderLayer::overriding(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_CSP),
    ));
    // An ops endpoint, not part of the API (so not in the OpenAPI document): on the main
    // address only behind its token.
    let router = if state.config.metrics.token.is_empty() {
        router
    } else {
        router.route("/metrics", get(routes::metrics::metrics))
    };
    let router = router
        .route(
            "/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], spec) }
            }),
        )
        .merge(docs)
        .merge(web::routes(&state))
        .fallback(not_found)
        // The body limit lives in the layer stack, where it also covers streamed bodies.
        .layer(DefaultBodyLimit::disable());
    layers::apply(router.with_state(state.clone()), &state.config)
}

/// The metrics on an address of their own (`metrics.listen`): nothing else is served there.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(routes::metrics::metrics))
        .with_state(state)
}

/// The one route list. Public routes, then the protected API under `/v1`, in groups that
/// differ in body limit and deadline.
fn route_list(state: &AppState) -> OpenApiRouter<AppState> {
    let config = &state.config;
    let public = OpenApiRouter::new()
        .routes(routes!(routes::health::health))
        .routes(routes!(routes::health::ready));
    let api = protect(
        OpenApiRouter::new()
            .routes(routes!(
                routes::conversations::create,
                routes::conversations::list
            ))
            .routes(routes!(
                routes::conversations::get,
                routes::conversations::update,
                routes::conversations::delete
            ))
            .routes(routes!(routes::conversations::messages))
            .routes(routes!(routes::search::search))
            .routes(routes!(routes::me::export))
            .routes(routes!(routes::me::erase))
            .routes(routes!(routes::admin::erase_user))
            .routes(routes!(routes::usage::mine))
            .routes(routes!(routes::usage::admin))
            .routes(routes!(routes::budgets::mine))
            .routes(routes!(
                routes::budgets::get,
                routes::budgets::put,
                routes::budgets::delete
            ))
            .routes(routes!(routes::api_keys::create, routes::api_keys::list))
            .routes(routes!(routes::api_keys::revoke))
            .routes(routes!(routes::chat::specialists))
            .routes(routes!(openai::models))
            // A directly named model's id holds a `/`: a catch-all, documented in `ApiDoc`
            // under `{model}` (the route list would publish the `*`).
            .route("/v1/models/{*model}", get(openai::model)),
        state,
    );
    // JSON routes: the small body limit and the request deadline.
    let regular = public
        .merge(api)
        .layer(TimeoutLayer::with_status_code(
            layers::TIMEOUT_STATUS,
            config.request_timeout(),
        ))
        .layer(RequestBodyLimitLayer::new(config.server.body_limit_bytes));
    // Files: bodies up to the upload size (each file is also checked while it streams), and
    // the transfer deadline instead of the request one.
    let upload_limit = usize::try_from(config.files.max_upload_bytes)
        .unwrap_or(usize::MAX)
        .saturating_mul(config.files.max_files_per_upload)
        .saturating_add(1 << 20);
    let files = protect(
        OpenApiRouter::new()
            .routes(routes!(routes::files::upload, routes::files::list))
            .routes(routes!(routes::files::get, routes::files::delete))
            .routes(routes!(routes::files::content))
            .routes(routes!(routes::files::text)),
        state,
    )
    .layer(TimeoutLayer::with_status_code(
        layers::TIMEOUT_STATUS,
        std::time::Duration::from_secs(config.files.transfer_timeout_secs),
    ))
    .layer(RequestBodyLimitLayer::new(upload_limit));
    // Chat: the JSON body limit; `send` may wait as long as a generation may run, and the
    // stream has no deadline at all (the generation's own bound applies).
    let generation = std::time::Duration::from_secs(config.chat.max_generation_secs + 5);
    let chat_send = protect(
        OpenApiRouter::new().routes(routes!(routes::chat::send)),
        state,
    )
    .layer(TimeoutLayer::with_status_code(
        layers::TIMEOUT_STATUS,
        generation,
    ))
    .layer(RequestBodyLimitLayer::new(config.server.body_limit_bytes));
    // The OpenAI-compatible completions: one route for both kinds of answer. The deadline
    // bounds the wait for the response head only, so a stream's body is not cut by it.
    let openai_chat = protect(
        OpenApiRouter::new().routes(routes!(openai::completions)),
        state,
    )
    .layer(TimeoutLayer::with_status_code(
        layers::TIMEOUT_STATUS,
        generation,
    ))
    .layer(RequestBodyLimitLayer::new(config.server.body_limit_bytes));
    let chat_stream = protect(
        OpenApiRouter::new()
            .routes(routes!(routes::stream::stream))
            .routes(routes!(routes::stream::resume)),
        state,
    )
    .layer(RequestBodyLimitLayer::new(config.server.body_limit_bytes));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(regular)
        .merge(files)
        .merge(chat_send)
        .merge(chat_stream)
        .merge(openai_chat)
}

/// Closed by default: auth, then the caller's rate-limit bucket (route layers run
/// outer-last, so auth comes first).
fn protect(router: OpenApiRouter<AppState>, state: &AppState) -> OpenApiRouter<AppState> {
    router
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            limits::limit_user,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_principal,
        ))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(&format!("route {method} {}", uri.path()))
}
