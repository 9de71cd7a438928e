//! The one layer list, outer to inner, with why each layer sits where it does.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use tower::ServiceBuilder;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::config::Config;
use crate::http::edges::{EntryLayer, GuardLayer};
use crate::http::request_id::RequestId;
use crate::http::trace_context::{TraceParent, trace_id_hex};
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Wraps the routed app in the middleware stack. Outer to inner:
///
/// 1. sensitive headers: Authorization, cookies and API keys are marked so no layer's
///    `Debug` output can print them.
/// 2. entry (`edges::Entry`): the request id first, so every response (a panic's or a
///    preflight's too) carries it and error bodies can quote it; and the request metrics.
/// 3. trace span: one span per request with id, method, route, status and latency.
/// 4. compression: gzip/br for JSON; never for `text/event-stream`, where it would buffer.
/// 5. CORS: outside the guard, so error responses carry CORS headers like any other.
/// 6. security headers: on every response, unless a route set its own (the docs page's CSP).
/// 7. guard (`edges::Guard`): a panic becomes a 500 envelope, and any bare error a layer or
///    axum produced (405, 413, 504...) gets the envelope. Innermost, so the 500 carries the
///    request id and passes CORS like any error.
///
/// The body limit and the timeout are not here: each route group has its own (JSON routes
/// 1 MiB and `server.request_timeout_secs`; uploads their size and transfer time; streams
/// no deadline). See `http::route_list`.
pub fn apply(router: Router, config: &Config) -> Router {
    let hsts = (config.security.hsts_max_age_secs > 0).then(|| {
        let value = format!(
            "max-age={}; includeSubDomains",
            config.security.hsts_max_age_secs
        );
        SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("max-age=0")),
        )
    });
    let export_traces = !config.telemetry.otlp_endpoint.is_empty();
    let csp = HeaderValue::from_str(&config.security.content_security_policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));

    router.layer(
        ServiceBuilder::new()
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::PROXY_AUTHORIZATION,
                header::COOKIE,
                HeaderName::from_static("x-api-key"),
            ]))
            .layer(EntryLayer)
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(move |request: &Request| make_span(request, export_traces))
                    .on_response(
                        |response: &axum::http::Response<_>, latency: Duration, span: &Span| {
                            on_response(response.status(), latency, span)
                        },
                    ),
            )
            // Below 1 KiB a body fits one packet anyway, and setting up an encoder (brotli's
            // tables above all) cost more CPU than the whole request. Level 4 keeps most of
            // the ratio of brotli's default level 11 at a fraction of its time.
            .layer(
                CompressionLayer::new()
                    .gzip(true)
                    .br(true)
                    .quality(CompressionLevel::Precise(4))
                    .compress_when(
                        SizeAbove::new(1024)
                            .and(NotForContentType::SSE)
                            .and(NotForContentType::IMAGES)
                            .and(NotForContentType::GRPC),
                    ),
            )
            .layer(cors(config))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::X_FRAME_OPTIONS,
                HeaderValue::from_static("DENY"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CONTENT_SECURITY_POLICY,
                csp,
            ))
            .option_layer(hsts)
            .layer(GuardLayer),
    )
}

fn cors(config: &Config) -> CorsLayer {
    let c = &config.cors;
    let methods: Vec<Method> = c
        .allowed_methods
        .iter()
        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
        .collect();
    let headers: Vec<HeaderName> = c
        .allowed_headers
        .iter()
        .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
        .collect();
    let expose: Vec<HeaderName> = c
        .expose_headers
        .iter()
        .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
        .collect();
    let origins = if c.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::from(Any)
    } else {
        // A predicate over a shared list rather than `AllowOrigin::list`: the CORS service
        // is cloned per request, and a list would be copied each time.
        let allowed: Arc<[HeaderValue]> = c
            .allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        AllowOrigin::predicate(move |origin: &HeaderValue, _| allowed.contains(origin))
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods(methods)
        .allow_headers(headers)
        .expose_headers(expose)
        .allow_credentials(c.allow_credentials)
        .max_age(Duration::from_secs(c.max_age_secs))
}

/// The request's span: its id, trace id, method and route template, on every line logged
/// inside it. With trace export on, the span continues the caller's `traceparent` (or starts
/// a trace) and the trace id logged is the one exported.
fn make_span(request: &Request, export_traces: bool) -> Span {
    let id = request
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.as_ref())
        .unwrap_or("");
    // These layers run after routing, so the route template is known here (none for a 404).
    // The raw path and query are deliberately not logged: they may carry ids or tokens.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    let incoming = TraceParent::from_headers(request.headers());
    let method = request.method();
    if !export_traces {
        // A new trace id is a UUIDv7's 128 bits: 74 of them random, never all zero.
        let trace_id = incoming.map_or_else(|| uuid::Uuid::now_v7().as_u128(), |t| t.trace_id);
        return tracing::info_span!("request", request_id = %id, trace_id = %trace_id_hex(trace_id), method = %method, route);
    }
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        trace_id = tracing::field::Empty,
        method = %method,
        route,
        otel.kind = "server",
        otel.name = %format_args!("{method} {route}"),
    );
    if let Some(parent) = incoming {
        // Fails only when the span is disabled; then there is nothing to export either.
        let _ = span.set_parent(parent.context());
    }
    let trace_id = span.context().span().span_context().trace_id();
    span.record("trace_id", tracing::field::display(trace_id));
    span
}

/// The access log line. Status and latency are fields of the event rather than recorded
/// into the span: a span's fields are copied into every line logged inside it, and only
/// this line needs them.
fn on_response(status: StatusCode, latency: Duration, _span: &Span) {
    let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    tracing::info!(status = status.as_u16(), latency_ms, "response");
}

/// The status a timed-out non-streaming request gets.
pub const TIMEOUT_STATUS: StatusCode = StatusCode::GATEWAY_TIMEOUT;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        std::panic::panic_any("secret internals")
    }

    #[tokio::test]
    async fn a_panic_becomes_a_500_envelope_with_the_request_id() {
        let env: &[(&str, &str)] = &[("COLLOQUY_CONFIG_DIR", "/nonexistent")];
        let config = Config::load_from(env).unwrap();
        let app = apply(Router::new().route("/boom", get(boom)), &config);
        let response = app
            .oneshot(
                Request::get("/boom")
                    .header("x-request-id", "panic-test-1")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["x-request-id"], "panic-test-1");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("secret internals"), "{text}");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "internal");
        assert_eq!(json["error"]["request_id"], "panic-test-1");
    }
}
