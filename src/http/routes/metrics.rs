//! `GET /metrics`: the Prometheus exposition. Behind a bearer token on the main address;
//! on the metrics address of its own, behind the token only when one is set.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::prometheus::{self, DB_CONNECTIONS, USAGE_QUEUE};
use crate::state::AppState;

pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = &state.config.metrics.token;
    if !token.is_empty() {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "The metrics need the metrics bearer token.",
            )
            .into_response();
        }
    }
    // Levels are read now rather than kept up to date on every change.
    metrics::gauge!(USAGE_QUEUE).set(state.chat.usage_queue_depth() as f64);
    let (in_use, idle) = state.store.pool_connections();
    metrics::gauge!(DB_CONNECTIONS, "state" => "in_use").set(f64::from(in_use));
    metrics::gauge!(DB_CONNECTIONS, "state" => "idle").set(f64::from(idle));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus::render(),
    )
        .into_response()
}
