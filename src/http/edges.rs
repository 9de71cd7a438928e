//! The two ends of the layer stack, written as plain tower services: `Entry` (request id and
//! request metrics, outermost) and `Guard` (panic → 500, bare error → envelope, innermost).
//!
//! Why not `axum::middleware::from_fn`: a `from_fn` layer clones everything beneath it on
//! every request (it hands the clone to `Next`), so four of them cloned the CORS, trace and
//! compression services three times per request. These call their inner service directly:
//! axum's services are always ready, and `poll_ready` is passed through all the same.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tower::{Layer, Service};

use crate::error::{ApiError, EnvelopeRendered};
use crate::http::request_id;

/// Outermost: assigns the request id (extension, task-local, response header) and counts the
/// request and its latency by route template.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryLayer;

impl<S> Layer<S> for EntryLayer {
    type Service = Entry<S>;

    fn layer(&self, inner: S) -> Entry<S> {
        Entry { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Entry<S> {
    inner: S,
}

impl<S, B> Service<Request> for Entry<S>
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = axum::http::Response<B>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let (id, value) = request_id::assign(&mut request);
        let method = method_label(request.method());
        // These layers run after routing, so the route template is known (none for a 404).
        // Never the raw path: ids in it would make a series each.
        let route = request.extensions().get::<MatchedPath>().cloned();
        // Inner layers may render an error in `call` already: they see the id too.
        let future = request_id::scope_sync(id.clone(), || self.inner.call(request));
        Box::pin(async move {
            let Ok(mut response) = request_id::scope(id, future).await;
            response
                .headers_mut()
                .insert(request_id::X_REQUEST_ID, value);
            crate::prometheus::record_request(
                route.as_ref().map_or("unmatched", MatchedPath::as_str),
                method,
                response.status().as_u16(),
                started.elapsed().as_secs_f64(),
            );
            Ok(response)
        })
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Innermost: a panicking handler becomes a 500 envelope (the panic text goes to the log
/// only), and any bare error status a layer or axum produced (405, 413, 504...) gets the
/// envelope, keeping its headers (Allow, Retry-After...). The layers outside it (security
/// headers, CORS) then treat the envelope like any response.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardLayer;

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
}

impl<S> Service<Request> for Guard<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The OpenAI-compatible routes answer errors in OpenAI's shape; the path is known
        // before the request is handed on.
        let openai = crate::http::openai::errors::owns(request.uri().path());
        // A panic may come from `call` itself or from polling the future it returned.
        let called = std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request)));
        Box::pin(async move {
            let response = match called {
                Ok(future) => match AssertUnwindSafe(future).catch_unwind().await {
                    Ok(Ok(response)) => response,
                    Err(payload) => panicked(payload.as_ref()),
                },
                Err(payload) => panicked(payload.as_ref()),
            };
            let response = envelope(response);
            Ok(if openai {
                crate::http::openai::errors::render(response)
            } else {
                response
            })
        })
    }
}

fn panicked(payload: &(dyn std::any::Any + Send)) -> Response {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_owned());
    tracing::error!(panic = %detail, "request handler panicked");
    ApiError::internal().into_response()
}

/// Renders the envelope for an error response that does not have one yet.
fn envelope(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<EnvelopeRendered>().is_some()
    {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let (rendered, body) = ApiError::from_status(status).into_response().into_parts();
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_ENCODING,
        header::TRANSFER_ENCODING,
    ] {
        parts.headers.remove(name);
    }
    for (name, value) in &rendered.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    if let Some(error) = rendered.extensions.get::<EnvelopeRendered>() {
        parts.extensions.insert(error.clone());
    }
    Response::from_parts(parts, body)
}
