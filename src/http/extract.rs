//! Extractors whose rejections use the error envelope: `ApiJson<T>` and `Principal`.

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::Principal;
use crate::error::ApiError;

/// JSON in and out. Rejects a wrong content type (415), invalid JSON (400 `malformed_json`,
/// with line and column), a wrong field (422 `invalid_field`, naming the field) and an
/// oversized body (413), all in the envelope.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        parse(&bytes).map(ApiJson)
    }
}

/// A JSON body not parsed yet, for a handler that parses it more than one way: checked like
/// `ApiJson` (415, 413, 400) except for the parse itself, which is the handler's (`parse`).
#[derive(Debug, Clone)]
pub struct JsonBytes(pub Bytes);

impl<S> FromRequest<S> for JsonBytes
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(CONTENT_TYPE)) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as JSON with `Content-Type: application/json`.",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "The request body could not be read.",
                )
            }
        })?;
        Ok(Self(bytes))
    }
}

fn is_json(content_type: Option<&axum::http::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5
            && essence[..12.min(essence.len())].eq_ignore_ascii_case("application/")
            && essence.to_ascii_lowercase().ends_with("+json"))
}

/// Parses a JSON body, naming the failing field on a type or value error.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // The plain parser first: tracking the path costs as much again, and only an error
    // needs it, so a bad body is parsed twice to name the field at fault.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        use serde_json::error::Category;
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!("The body is not valid JSON: {inner}"),
            )
            .with_details(serde_json::json!({ "line": inner.line(), "column": inner.column() })),
            Category::Data => {
                // serde's message names the expected type; the line/column suffix is noise.
                let message = strip_position(&inner.to_string());
                let field = if path == "." {
                    // At the root, an unknown or missing field is named only in the message.
                    quoted_field(&message).unwrap_or_default()
                } else {
                    path
                };
                ApiError::invalid_field(
                    &field,
                    if field.is_empty() {
                        format!("Invalid body: {message}")
                    } else {
                        format!("Invalid field `{field}`: {message}")
                    },
                )
            }
        }
    })?;
    // Trailing bytes after the JSON value are a syntax error too.
    de.end().map_err(|inner| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("The body is not valid JSON: {inner}"),
        )
        .with_details(serde_json::json!({ "line": inner.line(), "column": inner.column() }))
    })?;
    Ok(value)
}

/// The field in serde's "unknown field `x`" / "missing field `x`" messages.
fn quoted_field(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))?;
    Some(rest.split('`').next()?.to_owned())
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query parameters whose rejection is the envelope (422 `invalid_field`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| ApiQuery(q))
            .map_err(|rejection| {
                let text = rejection.body_text();
                let detail = text
                    .rsplit_once(": ")
                    .map_or(text.as_str(), |(_, d)| d)
                    .to_owned();
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    format!("Invalid query string: {detail}"),
                )
                .with_details(serde_json::json!({ "field": "query" }))
            })
    }
}

/// An id from the path; a malformed one is simply not found.
pub fn path_id(raw: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::not_found(what))
}

/// The authenticated caller, put in the request by the auth layer.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("Authentication required."))
    }
}

/// For `Option<Option<T>>` fields with `#[serde(default, deserialize_with = "present")]`: a
/// field that is there, even as null, is `Some` (`{"title": null}` clears a title), while a
/// body without it gives `None` (leave it alone, or: required and missing).
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A user id taken from a path (`/v1/admin/users/{user_id}/…`): token subjects are short
/// printable strings, and a NUL or control character would only reach the database to fail
/// there.
pub fn user_id_param(raw: String) -> Result<String, ApiError> {
    if raw.is_empty() || raw.len() > 256 || raw.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "user_id",
            "Invalid field `user_id`: 1 to 256 bytes, no control characters",
        ));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        n: u32,
    }

    #[test]
    fn classifies_json_errors() {
        let cases: &[(&str, &str, &str)] = &[
            ("{", "malformed_json", "truncated"),
            ("{\"name\": }", "malformed_json", "syntax"),
            ("{\"name\": 1, \"n\": 1}", "invalid_field", "wrong type"),
            ("{\"name\": \"x\"}", "invalid_field", "missing field"),
            (
                "{\"name\": \"x\", \"n\": 1} trailing",
                "malformed_json",
                "trailing data",
            ),
        ];
        for (body, code, why) in cases {
            let err = parse::<Body>(body.as_bytes()).unwrap_err();
            assert_eq!(err.code(), *code, "{why}: {body}");
        }
        assert!(parse::<Body>(b"{\"name\":\"x\",\"n\":1}").is_ok());
    }

    #[test]
    fn json_content_types() {
        let ok = |v: &str| is_json(Some(&axum::http::HeaderValue::from_str(v).unwrap()));
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("Application/JSON"));
        assert!(ok("application/merge-patch+json"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/jsonx"));
        assert!(!is_json(None));
    }
}
