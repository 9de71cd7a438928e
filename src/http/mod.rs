//! The HTTP surface: the one route list (utoipa-axum, so the router and the OpenAPI
//! document come from the same list) and `build_app`.

pub mod auth;
pub mod extract;
pub mod layers;
pub mod limits;
mod openapi;
pub mod request_id;
pub mod routes;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, Uri, header};
use axum::middleware;
use axum::routing::get;
use bytes::Bytes;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::state::AppState;

pub use openapi::ApiDoc;

/// Routes anyone may call: the explicit public allow-list. Everything else is protected.
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
    let router = router
        .route(
            "/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], spec) }
            }),
        )
        .merge(docs)
        .fallback(not_found)
        // The body limit lives in the layer stack, where it also covers streamed bodies.
        .layer(DefaultBodyLimit::disable())
        .route_layer(middleware::from_fn(layers::record_route));
    layers::apply(router.with_state(state.clone()), &state.config)
}

/// The one route list. Public routes, then the protected API under `/v1`.
fn route_list(state: &AppState) -> OpenApiRouter<AppState> {
    let public = OpenApiRouter::new()
        .routes(routes!(routes::health::health))
        .routes(routes!(routes::health::ready));
    let protected = OpenApiRouter::new()
        .routes(routes!(routes::conversations::create))
        .routes(routes!(routes::conversations::get))
        .routes(routes!(routes::api_keys::create, routes::api_keys::list))
        .routes(routes!(routes::api_keys::revoke))
        // Route layers run outer-last: auth first, then the user's bucket.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            limits::limit_user,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_principal,
        ));
    // Streaming routes (SSE) will be merged beside `regular`, without the timeout: a
    // deadline would cut a healthy long answer.
    let regular = public
        .merge(protected)
        .layer(TimeoutLayer::with_status_code(
            layers::TIMEOUT_STATUS,
            state.config.request_timeout(),
        ));
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(regular)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(&format!("route {method} {}", uri.path()))
}
