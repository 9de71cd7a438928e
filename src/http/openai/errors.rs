//! Errors on the OpenAI-compatible routes, in OpenAI's shape
//! `{"error": {"message", "type", "param", "code"}}` and with the statuses OpenAI's SDKs
//! expect. Every error is first an `ApiError` like anywhere else; the guard re-renders it
//! here for these paths, so auth, rate-limit, body-limit and panic errors are covered too.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, EnvelopeRendered};

/// Whether a request path belongs to the OpenAI-compatible surface.
pub fn owns(path: &str) -> bool {
    path == "/v1/chat/completions" || path == "/v1/models" || path.starts_with("/v1/models/")
}

/// OpenAI's error envelope, as documented in OpenAPI.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiErrorEnvelope {
    pub error: OpenAiError,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiError {
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `requests`
    /// (rate limited), `insufficient_quota` (budget) or `server_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The request parameter at fault, when one is.
    pub param: Option<String>,
    /// Colloquy's error code, or OpenAI's where one names the same case
    /// (`invalid_api_key`, `model_not_found`, `rate_limit_exceeded`, `insufficient_quota`).
    pub code: Option<String>,
}

impl OpenAiError {
    /// The status, type and code OpenAI would give the error, and its parameter.
    pub fn from_api(error: &ApiError) -> (StatusCode, Self) {
        let param = error
            .details()
            .and_then(|d| d.get("field"))
            .and_then(|f| f.as_str())
            .filter(|f| !f.is_empty())
            .map(str::to_owned);
        let (status, kind, code, param) = match (error.status().as_u16(), error.code()) {
            (_, "specialist_not_found") => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                Some("model".to_owned()),
            ),
            (_, "budget_exceeded") => (
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                "insufficient_quota",
                param,
            ),
            (_, "rate_limited") => (
                StatusCode::TOO_MANY_REQUESTS,
                "requests",
                "rate_limit_exceeded",
                param,
            ),
            (401, _) => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid_api_key",
                param,
            ),
            (403, code) => (StatusCode::FORBIDDEN, "permission_error", code, param),
            // OpenAI answers every invalid parameter with 400 (its SDKs: BadRequestError).
            (422, code) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                code,
                param,
            ),
            (s, code) if s >= 500 => (error.status(), "server_error", code, param),
            (_, code) => (error.status(), "invalid_request_error", code, param),
        };
        (
            status,
            Self {
                message: error.message().to_owned(),
                kind,
                param,
                code: Some(code.to_owned()),
            },
        )
    }
}

/// Re-renders an error response (our envelope, or a bare status) in OpenAI's shape,
/// keeping its headers (Retry-After, rate-limit, WWW-Authenticate). Others pass unchanged.
pub fn render(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let error = parts
        .extensions
        .remove::<EnvelopeRendered>()
        .map_or_else(|| ApiError::from_status(status), |e| e.0);
    let (status, body) = OpenAiError::from_api(&error);
    if matches!(error.code(), "budget_exceeded" | "upstream_error") {
        // Statuses the SDKs would otherwise retry, where retrying cannot help: waiting does
        // not refill a monthly budget, and the provider refused this request as it is.
        parts.headers.insert(
            HeaderName::from_static("x-should-retry"),
            HeaderValue::from_static("false"),
        );
    }
    let bytes =
        serde_json::to_vec(&OpenAiErrorEnvelope { error: body }).unwrap_or_else(|_| b"{}".to_vec());
    for name in [header::CONTENT_ENCODING, header::TRANSFER_ENCODING] {
        parts.headers.remove(name);
    }
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    parts.status = status;
    parts.extensions.insert(EnvelopeRendered(error));
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    async fn json(response: Response) -> (StatusCode, serde_json::Value) {
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn an_invalid_field_becomes_a_400_naming_the_parameter() {
        let (status, body) = json(render(
            ApiError::invalid_field("temperature", "between 0 and 2").into_response(),
        ))
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "temperature");
        assert_eq!(body["error"]["code"], "invalid_field");
        assert_eq!(body["error"]["message"], "between 0 and 2");
    }

    #[tokio::test]
    async fn a_bare_status_gets_the_shape_too() {
        let bare = StatusCode::METHOD_NOT_ALLOWED.into_response();
        let (status, body) = json(render(bare)).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"]["code"], "method_not_allowed");
        assert!(body["error"]["param"].is_null());
    }

    #[tokio::test]
    async fn errors_retrying_cannot_mend_say_so() {
        for (error, retry) in [
            (
                ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", "refused"),
                Some("false"),
            ),
            (
                ApiError::new(StatusCode::PAYMENT_REQUIRED, "budget_exceeded", "over"),
                Some("false"),
            ),
            (
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "upstream_unavailable",
                    "down",
                ),
                None,
            ),
        ] {
            let code = error.code();
            let response = render(error.into_response());
            let header = response
                .headers()
                .get("x-should-retry")
                .map(|v| v.to_str().unwrap());
            assert_eq!(header, retry, "{code}");
        }
    }

    #[test]
    fn only_the_compatible_paths_are_owned() {
        assert!(owns("/v1/chat/completions"));
        assert!(owns("/v1/models"));
        assert!(owns("/v1/models/general"));
        assert!(!owns("/v1/chat/send"));
        assert!(!owns("/v1/modelsx"));
    }
}
