//! `GET /metrics`: the Prometheus exposition. Behind a bearer token on the main address;
//! on the metrics address of its own, behind the token only when one is set.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::http::limits;
use crate::prometheus::{self, AUTH_FAILURES, DB_CONNECTIONS, USAGE_QUEUE};
use crate::ratelimit::{Class, Verdict};
use crate::state::AppState;

pub async fn metrics(State(state): State<AppState>, request: Request) -> Response {
    let token = &state.config.metrics.token;
    if !token.is_empty() && !presents(&request, token.expose()) {
        metrics::counter!(AUTH_FAILURES, "reason" => "metrics_token").increment(1);
        // Guesses spend from the address's anonymous bucket, like any bad credential.
        let ip = limits::client_ip(&state, &request);
        return match state.limiter.check_anonymous(ip).await {
            Verdict::Limited(d) => limits::limited(&d, Class::Anonymous),
            _ => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "The metrics need the metrics bearer token.",
            )
            .into_response(),
        };
    }
    // Levels are read now rather than kept up to date on every change.
    metrics::gauge!(USAGE_QUEUE).set(state.chat.usage_queue_depth() as f64);
    let (in_use, idle) = state.store.pool_connections();
    metrics::gauge!(DB_CONNECTIONS, "state" => "in_use").set(f64::from(in_use));
    metrics::gauge!(DB_CONNECTIONS, "state" => "idle").set(f64::from(idle));
    metrics::counter!(prometheus::RATE_LIMIT_REDIS_FAILURES)
        .absolute(state.limiter.redis_failures());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus::render(),
    )
        .into_response()
}

/// Whether the request carries `token` as its bearer token. Digests are compared, in
/// constant time, so neither the token's bytes nor its length leak through timing.
fn presents(request: &Request, token: &str) -> bool {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, t)| t.trim());
    let (a, b) = (Sha256::digest(presented), Sha256::digest(token));
    bool::from(a.ct_eq(&b))
}
