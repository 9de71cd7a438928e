//! Rate limiting on the protected router: the user's bucket for the route's class (after
//! auth), the `RateLimit-*` headers on every limited response, and 429 with `Retry-After`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::domain::Principal;
use crate::error::ApiError;
use crate::ratelimit::{Class, Decision, ForwardedHeader, Verdict};
use crate::state::AppState;

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Route layer, inside auth: spends from the principal's bucket for this route's class.
pub async fn limit_user(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(principal) = request.extensions().get::<Principal>() else {
        return next.run(request).await;
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("");
    let class = Class::of_route(request.method().as_str(), route);
    let verdict = state
        .limiter
        .check_user(class, &principal.user_id, principal.role)
        .await;
    match verdict {
        Verdict::Allowed(decision) => {
            let mut response = next.run(request).await;
            if let Some(d) = decision {
                set_headers(response.headers_mut(), &d);
            }
            response
        }
        Verdict::Limited(d) => limited(&d, class),
        Verdict::Unavailable => unavailable(),
    }
}

/// The client's address: the socket peer, or what a trusted proxy says it forwarded.
pub fn client_ip(state: &AppState, request: &Request) -> IpAddr {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let name = match state.limiter.forwarded_header() {
        ForwardedHeader::XForwardedFor => X_FORWARDED_FOR,
        ForwardedHeader::Forwarded => FORWARDED,
    };
    // Every line of the header, in order: a proxy may add a line instead of appending.
    let lines: Vec<&str> = request
        .headers()
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let joined = (!lines.is_empty()).then(|| lines.join(","));
    state.limiter.client_ip(peer, joined.as_deref())
}

/// The 429 answer: the envelope, `Retry-After` in whole seconds, and the bucket's headers.
pub fn limited(d: &Decision, class: Class) -> Response {
    metrics::counter!(crate::prometheus::RATE_LIMITED, "class" => class.as_str()).increment(1);
    let wait = whole_seconds(d.retry_after.unwrap_or(Duration::from_secs(1))).max(1);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("Too many requests; retry in {wait} s."),
    )
    .with_details(serde_json::json!({ "retry_after_secs": wait }))
    .into_response();
    let headers = response.headers_mut();
    set_headers(headers, d);
    headers.insert(header::RETRY_AFTER, HeaderValue::from(wait));
    response
}

pub fn unavailable() -> Response {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "rate_limiter_unavailable",
        "Requests cannot be admitted right now; try again shortly.",
    )
    .into_response()
}

pub fn set_headers(headers: &mut HeaderMap, d: &Decision) {
    let reset = HeaderValue::from(whole_seconds(d.reset_after));
    // Room for all six at once: the map would otherwise grow (and rehash) twice.
    headers.reserve(6);
    for (name, value) in [
        (RATELIMIT_LIMIT, HeaderValue::from(d.limit)),
        (RATELIMIT_REMAINING, HeaderValue::from(d.remaining)),
        (RATELIMIT_RESET, reset.clone()),
        (X_RATELIMIT_LIMIT, HeaderValue::from(d.limit)),
        (X_RATELIMIT_REMAINING, HeaderValue::from(d.remaining)),
        (X_RATELIMIT_RESET, reset),
    ] {
        headers.insert(name, value);
    }
}

/// Seconds, rounded up: a client that waits this long is never early.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
