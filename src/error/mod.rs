//! ApiError: the one place an error becomes an HTTP status and the JSON envelope
//! `{"error": {"code", "message", "request_id", "details"?}}`; each service's errors map
//! to it in `services`.

mod services;

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::http::request_id;

/// Every error code a client can see, with its status. Stable: clients switch on them.
pub const ERROR_CODES: &[(&str, u16, &str)] = &[
    ("bad_request", 400, "The request is malformed."),
    ("malformed_json", 400, "The body is not valid JSON."),
    (
        "unsupported_parameter",
        400,
        "OpenAI-compatible routes: a parameter (or a value of it) this server does not support; `param` names it.",
    ),
    (
        "unknown_parameter",
        400,
        "OpenAI-compatible routes: a parameter that is not part of the API; `param` names it.",
    ),
    (
        "invalid_field",
        422,
        "A field is missing or has the wrong type or value; `details.field` names it.",
    ),
    ("unauthorized", 401, "Missing or invalid credentials."),
    (
        "forbidden",
        403,
        "Authenticated, but not allowed to do this.",
    ),
    (
        "not_found",
        404,
        "No such route or resource (or it belongs to someone else).",
    ),
    (
        "stream_not_found",
        404,
        "The stream is not running on this instance (ended over a minute ago, or elsewhere); read the stored message instead.",
    ),
    (
        "method_not_allowed",
        405,
        "The route exists but not with this method; see the Allow header.",
    ),
    (
        "request_timeout",
        408,
        "The client took too long to send the request.",
    ),
    (
        "payload_too_large",
        413,
        "The body is larger than the configured limit.",
    ),
    (
        "unsupported_media_type",
        415,
        "The body's type is not accepted: JSON where JSON is expected; for files, a type on the allow-list whose content agrees.",
    ),
    (
        "rate_limited",
        429,
        "Too many requests; see Retry-After and `details.retry_after_secs`.",
    ),
    (
        "internal",
        500,
        "An unexpected error; the request id helps the operator find it.",
    ),
    ("unavailable", 503, "The service cannot answer right now."),
    (
        "database_unavailable",
        503,
        "The database cannot be reached right now.",
    ),
    (
        "not_ready",
        503,
        "A dependency is down; `details.checks` names it.",
    ),
    (
        "timeout",
        504,
        "The server did not finish within its deadline.",
    ),
    (
        "budget_exceeded",
        402,
        "The call's worst-case cost does not fit what is left of your monthly budget; `details` has the cap, spend, remaining budget and when it resets.",
    ),
    (
        "specialist_not_found",
        404,
        "No such specialist, or not one you may use.",
    ),
    (
        "range_not_satisfiable",
        416,
        "The requested byte range is outside the file; see Content-Range.",
    ),
    (
        "attachment_not_supported",
        422,
        "An attached file cannot go to this specialist's model (an image to a text-only model, or a file without text).",
    ),
    (
        "context_length_exceeded",
        422,
        "The prompt is longer than the model's context.",
    ),
    ("content_filtered", 422, "The provider refused the content."),
    (
        "upstream_error",
        502,
        "The model's provider refused or garbled the call.",
    ),
    (
        "upstream_unavailable",
        503,
        "The model's provider cannot be reached (its circuit may be open).",
    ),
    (
        "upstream_rate_limited",
        503,
        "The model's provider is rate limiting this server.",
    ),
    (
        "provider_not_configured",
        503,
        "The specialist's model names a provider this server does not have.",
    ),
    (
        "storage_unavailable",
        503,
        "File storage cannot be reached right now.",
    ),
    (
        "rate_limiter_unavailable",
        503,
        "The shared rate limiter (Redis) is unreachable and the server is configured to fail closed.",
    ),
    (
        "budget_unavailable",
        503,
        "The shared budget ledger (Redis) is unreachable and the server is configured to fail closed.",
    ),
    ("upstream_timeout", 504, "The model did not answer in time."),
    (
        "cut",
        504,
        "The answer was stopped at the generation time limit or by shutdown; what was generated is stored.",
    ),
    (
        "idempotency_key_reused",
        422,
        "The Idempotency-Key was used with a different body.",
    ),
    (
        "idempotency_key_in_progress",
        409,
        "A request with this Idempotency-Key is still running.",
    ),
];

/// The status of a code in `ERROR_CODES` (500 for one that is not there).
pub fn status_of(code: &str) -> StatusCode {
    ERROR_CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .and_then(|(_, status, _)| StatusCode::from_u16(*status).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The error envelope as documented in OpenAPI.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable snake_case code (see the API description for the list).
    #[schema(example = "not_found")]
    pub code: String,
    /// A human sentence; never internals.
    pub message: String,
    /// The request's `X-Request-Id`, for support.
    pub request_id: String,
    /// Extra structured detail, e.g. `{"field": "message"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

/// Marks a response whose body already is the envelope, so the fallback layer leaves it;
/// it keeps the error, for the routes that render errors in another shape (OpenAI's).
#[derive(Debug, Clone)]
pub struct EnvelopeRendered(pub ApiError);

#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
    details: Option<Value>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn details(&self) -> Option<&Value> {
        self.details.as_ref()
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn invalid_field(field: &str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
            .with_details(serde_json::json!({ "field": field }))
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "An internal error occurred.",
        )
    }

    /// The envelope for a bare status some layer produced (405 from routing, 413 from the
    /// body limit, 504 from the timeout...).
    pub fn from_status(status: StatusCode) -> Self {
        let (code, message): (&'static str, &'static str) = match status.as_u16() {
            400 => ("bad_request", "The request is malformed."),
            401 => ("unauthorized", "Missing or invalid credentials."),
            403 => ("forbidden", "Not allowed."),
            404 => ("not_found", "Not found."),
            405 => (
                "method_not_allowed",
                "This method is not allowed on this route.",
            ),
            408 => ("request_timeout", "The request took too long to arrive."),
            413 => ("payload_too_large", "The request body is too large."),
            415 => ("unsupported_media_type", "Unsupported content type."),
            429 => ("rate_limited", "Too many requests."),
            503 => ("unavailable", "The service is unavailable."),
            504 => ("timeout", "The server did not answer in time."),
            s if s >= 500 => ("internal", "An internal error occurred."),
            _ => ("bad_request", "The request was refused."),
        };
        Self::new(status, code, message)
    }

    fn body(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            error: ErrorBody {
                code: self.code.to_owned(),
                message: self.message.to_string(),
                request_id: request_id::current().unwrap_or_default(),
                details: self.details.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(EnvelopeRendered(self));
        response
    }
}
