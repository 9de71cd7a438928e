//! The built-in chat page at `/`: three files compiled into the binary (no CDN, no build
//! step), under a CSP of their own that allows only them and calls to this server. In
//! development (on the shipped development secret), `GET /dev/token` hands the page a token
//! for a development user; anywhere else that route does not exist.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::auth::jwt::{self, TokenRequest};
use crate::domain::Role;
use crate::error::ApiError;
use crate::state::AppState;

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/app.css");

/// The page's own policy: its script and style from this origin, fetches to this origin
/// only, no inline code, no framing. (The API's default policy, `default-src 'none'`, would
/// block the page's own files.)
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The development user the token route signs in.
pub const DEV_USER: &str = "dev";

/// The page's routes; the token route only in development proper: the `development`
/// environment, still on the shipped development JWT secret, with HS256 tokens verified.
/// An operator who set a secret of their own, or any other environment name (`staging`, a
/// typo), gets no route that hands out tokens signed with it.
pub fn routes(state: &AppState) -> Router<AppState> {
    let router = Router::new()
        .route(
            "/",
            get(Asset::new(INDEX, "text/html; charset=utf-8").handler()),
        )
        .route(
            "/app.js",
            get(Asset::new(SCRIPT, "text/javascript; charset=utf-8").handler()),
        )
        .route(
            "/app.css",
            get(Asset::new(STYLE, "text/css; charset=utf-8").handler()),
        );
    let config = &state.config;
    let development = config.environment == "development"
        && config.auth.jwt_secret.expose() == crate::config::DEVELOPMENT_JWT_SECRET
        && config.auth.hs256_enabled();
    if !development {
        return router;
    }
    router.route("/dev/token", get(dev_token))
}

/// A file with its ETag (the build's version and the file's length and hash), worked out
/// once at start-up: revalidated on every load, so a new binary's page is seen at once, and
/// a 304 otherwise.
#[derive(Clone)]
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Self {
        let etag = HeaderValue::from_str(&etag_of(body))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        Self {
            body,
            content_type,
            etag,
        }
    }

    fn handler(
        self,
    ) -> impl Fn(HeaderMap) -> std::future::Ready<Response> + Clone + Send + 'static {
        move |headers: HeaderMap| std::future::ready(self.respond(&headers))
    }

    fn respond(&self, request: &HeaderMap) -> Response {
        let headers = [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::ETAG, self.etag.clone()),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_CSP),
            ),
        ];
        if request.get(header::IF_NONE_MATCH) == Some(&self.etag) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        (headers, self.body).into_response()
    }
}

fn etag_of(body: &str) -> String {
    // FNV-1a: a stable fingerprint of compiled-in text, not a security measure.
    let hash = body.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!(
        "\"{}-{:x}-{hash:016x}\"",
        env!("CARGO_PKG_VERSION"),
        body.len()
    )
}

/// A day's token for the development user (role `user`), so the page works a minute after
/// `cargo run`.
async fn dev_token(State(state): State<AppState>) -> Result<Response, ApiError> {
    let token = jwt::mint(
        &state.config.auth,
        &TokenRequest {
            sub: DEV_USER,
            email: Some("dev@example.com"),
            role: Role::User,
            ttl_secs: 86_400,
        },
    )
    .map_err(|e| {
        tracing::error!(error = %e, "could not mint a development token");
        ApiError::internal()
    })?;
    let mut response = axum::Json(json!({ "token": token, "user": DEV_USER })).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
