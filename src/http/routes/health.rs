//! `GET /health` (the process is alive) and `GET /ready` (its dependencies answer).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorEnvelope};
use crate::readiness;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
    #[schema(example = "0.1.0")]
    version: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    status: &'static str,
    /// Each dependency and its state, e.g. `{"database": "ok", "redis": "ok"}`.
    #[schema(value_type = Object)]
    checks: std::collections::BTreeMap<&'static str, &'static str>,
    /// Each LLM provider's circuit breaker: `closed`, `open` or `half_open`. Informational:
    /// an open circuit does not make the instance unready.
    #[schema(value_type = Object)]
    providers: std::collections::BTreeMap<String, &'static str>,
}

/// Liveness: answers without touching any dependency.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The process is alive", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Readiness: one database round trip, and Redis when configured.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses(
        (status = 200, description = "Every dependency answers", body = Ready),
        (status = 503, description = "A dependency is down (`not_ready`); `details.checks` names it", body = ErrorEnvelope),
    ))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let readiness = readiness::check(&state).await;
    if readiness.is_ready() {
        return (
            StatusCode::OK,
            Json(Ready {
                status: "ready",
                checks: readiness.checks,
                providers: state.providers.breaker_states(),
            }),
        )
            .into_response();
    }
    let failing = readiness.failing().join(", ");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        format!("Not ready: {failing} unavailable."),
    )
    .with_details(serde_json::json!({ "checks": readiness.checks }))
    .into_response()
}
