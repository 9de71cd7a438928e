//! Request ids: keep a sane incoming `X-Request-Id`, else mint a UUIDv7; echo it on every
//! response and expose it to error rendering through a task-local.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The request id as a request extension, for handlers and services.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// The current request's id, inside the request's task.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(|id| id.to_string()).ok()
}

/// Short, printable and free of anything that could forge a log line or a header.
fn is_sane(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Takes a sane incoming id or mints one; sets it on the request (header and extension).
/// Returns it and its header value, for the task-local and the response.
pub fn assign(request: &mut Request) -> (Arc<str>, HeaderValue) {
    let id: Arc<str> = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane(v))
        .map(Arc::from)
        .unwrap_or_else(|| Arc::from(uuid::Uuid::now_v7().to_string()));
    // Sane ids and UUIDs are valid header values by construction.
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    request.headers_mut().insert(X_REQUEST_ID, value.clone());
    request.extensions_mut().insert(RequestId(id.clone()));
    (id, value)
}

/// Runs `future` with `id` as the current request id.
pub async fn scope<F: Future>(id: Arc<str>, future: F) -> F::Output {
    REQUEST_ID.scope(id, future).await
}

/// Runs `f` with `id` as the current request id.
pub fn scope_sync<R>(id: Arc<str>, f: impl FnOnce() -> R) -> R {
    REQUEST_ID.sync_scope(id, f)
}

#[cfg(test)]
mod tests {
    use super::is_sane;

    #[test]
    fn sanity_rules() {
        assert!(is_sane("abc-123_x.y:z"));
        assert!(!is_sane(""));
        assert!(!is_sane(&"a".repeat(129)));
        assert!(!is_sane("bad id"));
        assert!(!is_sane("line\nbreak"));
    }
}
