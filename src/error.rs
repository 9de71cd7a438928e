//! ApiError: the one place an error becomes an HTTP status and the JSON envelope
//! `{"error": {"code", "message", "request_id", "details"?}}`.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::http::request_id;
use crate::store::StoreError;

/// Every error code a client can see, with its status. Stable: clients switch on them.
pub const ERROR_CODES: &[(&str, u16, &str)] = &[
    ("bad_request", 400, "The request is malformed."),
    ("malformed_json", 400, "The body is not valid JSON."),
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

/// Marks a response whose body already is the envelope, so the fallback layer leaves it.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeRendered;

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
        response.extensions_mut().insert(EnvelopeRendered);
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ConversationNotFound(_) => Self::not_found("conversation"),
            StoreError::Unavailable(inner) => {
                tracing::error!(error = %inner, "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "The database cannot be reached right now.",
                )
            }
            other => {
                tracing::error!(error = %other, "store error");
                Self::internal()
            }
        }
    }
}

impl From<crate::conversations::ConversationError> for ApiError {
    fn from(e: crate::conversations::ConversationError) -> Self {
        use crate::conversations::ConversationError as E;
        match e {
            E::NotFound => Self::not_found("conversation"),
            E::Invalid { field, problem } => {
                Self::invalid_field(field, format!("Invalid field `{field}`: {problem}"))
            }
            E::Forbidden(role) => {
                Self::forbidden(format!("The {} role may not do this.", role.as_str()))
            }
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<crate::api_keys::ApiKeyError> for ApiError {
    fn from(e: crate::api_keys::ApiKeyError) -> Self {
        use crate::api_keys::ApiKeyError as E;
        match e {
            E::NotFound => Self::not_found("api key"),
            E::Invalid { field, problem } => {
                Self::invalid_field(field, format!("Invalid field `{field}`: {problem}"))
            }
            E::Forbidden(message) => Self::forbidden(message),
            E::Random(detail) => {
                tracing::error!(error = %detail, "no randomness for an api key");
                Self::internal()
            }
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<crate::files::FileError> for ApiError {
    fn from(e: crate::files::FileError) -> Self {
        match e {
            crate::files::FileError::NotFound => Self::not_found("file"),
            crate::files::FileError::TooLarge { limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("A file may be at most {limit} bytes."),
            ),
            crate::files::FileError::UnsupportedType(why) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                why,
            ),
            crate::files::FileError::Invalid { field, problem } => {
                Self::invalid_field(field, format!("Invalid field `{field}`: {problem}"))
            }
            crate::files::FileError::Forbidden(role) => {
                Self::forbidden(format!("The {} role may not upload files.", role.as_str()))
            }
            crate::files::FileError::RangeNotSatisfiable { size } => Self::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("The range is outside the file's {size} bytes."),
            )
            .with_details(serde_json::json!({ "size": size })),
            crate::files::FileError::Upload(why) => Self::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("The upload broke off: {why}"),
            ),
            crate::files::FileError::Storage(why) => {
                tracing::error!(error = %why, "file storage error");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "File storage cannot be reached right now.",
                )
            }
            crate::files::FileError::Store(inner) => inner.into(),
        }
    }
}

impl From<crate::chat::ChatError> for ApiError {
    fn from(e: crate::chat::ChatError) -> Self {
        match e {
            crate::chat::ChatError::SpecialistNotFound => Self::new(
                StatusCode::NOT_FOUND,
                "specialist_not_found",
                "No such specialist, or not one you may use.",
            ),
            crate::chat::ChatError::ConversationNotFound => Self::not_found("conversation"),
            crate::chat::ChatError::Invalid { field, problem } => {
                Self::invalid_field(field, format!("Invalid field `{field}`: {problem}"))
            }
            crate::chat::ChatError::AttachmentNotSupported(why) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "attachment_not_supported",
                format!("Attachment not supported: {why}."),
            ),
            crate::chat::ChatError::Forbidden => Self::forbidden("Viewers cannot chat."),
            crate::chat::ChatError::Provider(failure) => {
                let status = match failure.error.code() {
                    "upstream_timeout" => StatusCode::GATEWAY_TIMEOUT,
                    "context_length_exceeded" | "content_filtered" => {
                        StatusCode::UNPROCESSABLE_ENTITY
                    }
                    "upstream_error" => StatusCode::BAD_GATEWAY,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                Self::new(
                    status,
                    failure.error.code(),
                    crate::chat::client_message(&failure.error),
                )
            }
            crate::chat::ChatError::Cut(why) => Self::new(StatusCode::GATEWAY_TIMEOUT, "cut", why),
            crate::chat::ChatError::Budget(inner) => inner.into(),
            crate::chat::ChatError::Files(inner) => inner.into(),
            crate::chat::ChatError::Store(inner) => inner.into(),
            crate::chat::ChatError::Internal => Self::internal(),
            crate::chat::ChatError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The server is shutting down; try again shortly.",
            ),
        }
    }
}

impl From<crate::budgets::BudgetError> for ApiError {
    fn from(e: crate::budgets::BudgetError) -> Self {
        use crate::budgets::BudgetError as E;
        match e {
            E::Exceeded(refusal) => {
                let remaining = refusal.remaining_nano_usd();
                Self::new(
                    StatusCode::PAYMENT_REQUIRED,
                    "budget_exceeded",
                    format!(
                        "This call could cost up to {} nano-USD and {remaining} of your monthly budget is left.",
                        refusal.required_nano_usd
                    ),
                )
                .with_details(serde_json::json!({
                    "monthly_cap_nano_usd": refusal.monthly_cap_nano_usd,
                    "spent_nano_usd": refusal.spent_nano_usd,
                    "reserved_nano_usd": refusal.reserved_nano_usd,
                    "remaining_nano_usd": remaining,
                    "required_nano_usd": refusal.required_nano_usd,
                    "resets_at": refusal
                        .resets_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                }))
            }
            E::Unavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "budget_unavailable",
                "Budgets cannot be checked right now; try again shortly.",
            ),
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<crate::user_data::UserDataError> for ApiError {
    fn from(e: crate::user_data::UserDataError) -> Self {
        use crate::user_data::UserDataError as E;
        match e {
            E::Invalid { field, problem } => {
                Self::invalid_field(field, format!("Invalid field `{field}`: {problem}"))
            }
            E::Forbidden(message) => Self::forbidden(message),
            E::Files(inner) => inner.into(),
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<crate::usage::UsageError> for ApiError {
    fn from(e: crate::usage::UsageError) -> Self {
        use crate::usage::UsageError as E;
        match e {
            E::Invalid { field, problem } => {
                Self::invalid_field(field, format!("Invalid field `{field}`: {problem}"))
            }
            E::Forbidden(message) => Self::forbidden(message),
            E::Store(inner) => inner.into(),
        }
    }
}
