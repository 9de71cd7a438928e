//! The auth layer of the protected router: a valid bearer token or API key, else 401 (403
//! for a disallowed email domain); then a `Principal` in the request extensions for the
//! `Principal` extractor.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::api_keys::KEY_PREFIX;
use crate::auth::{AuthError, Credential};
use crate::error::ApiError;
use crate::http::limits;
use crate::ratelimit::{Class, Verdict};
use crate::state::AppState;

pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

pub async fn require_principal(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let credential = credential(&request);
    // An address whose anonymous bucket is empty gets no verification work that costs I/O
    // (JWKS refetches, key lookups); a caller with good credentials still gets through.
    let ip = limits::client_ip(&state, &request);
    if let Some(decision) = state.limiter.blocked(ip) {
        let principal = match credential {
            Ok(c) => state.auth.authenticate_offline(c).await.ok(),
            Err(_) => None,
        };
        let Some(principal) = principal else {
            return limits::limited(&decision, Class::Anonymous);
        };
        request.extensions_mut().insert(principal);
        return next.run(request).await;
    }
    let outcome = match credential {
        Ok(credential) => state.auth.authenticate(credential).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(reason) => {
            // An audit event: the reason, never the credential.
            tracing::warn!(target: "colloquy::audit", event = "auth_failed", reason = %reason);
            metrics::counter!(crate::prometheus::AUTH_FAILURES, "reason" => reason.kind())
                .increment(1);
            // Our own outage is not the caller's attempt: no spend.
            if reason == AuthError::Unavailable {
                return refusal(&reason).into_response();
            }
            // Failed and missing credentials spend from the address's bucket (brute force).
            match state.limiter.check_anonymous(ip).await {
                Verdict::Limited(d) => limits::limited(&d, Class::Anonymous),
                Verdict::Unavailable => limits::unavailable(),
                Verdict::Allowed(decision) => {
                    let mut response = refusal(&reason).into_response();
                    if let Some(d) = decision {
                        limits::set_headers(response.headers_mut(), &d);
                    }
                    response
                }
            }
        }
    }
}

fn refusal(reason: &AuthError) -> ApiError {
    match reason {
        AuthError::DomainNotAllowed => {
            ApiError::forbidden("Your email domain is not allowed on this server.")
        }
        AuthError::Unavailable => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "Credentials cannot be checked right now.",
        ),
        AuthError::Missing => {
            ApiError::unauthorized("Send `Authorization: Bearer <token>` or `X-Api-Key: <key>`.")
        }
        AuthError::WrongScheme => ApiError::unauthorized("Only the Bearer scheme is accepted."),
        AuthError::Expired => ApiError::unauthorized("The token has expired."),
        AuthError::RevokedApiKey | AuthError::UnknownApiKey => {
            ApiError::unauthorized("The API key is not valid.")
        }
        _ => ApiError::unauthorized("The token is not valid."),
    }
}

fn credential(request: &Request) -> Result<Credential<'_>, AuthError> {
    let headers = request.headers();
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::WrongScheme)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::WrongScheme);
        }
        let token = token.trim();
        return match token {
            "" => Err(AuthError::Missing),
            t if t.starts_with(KEY_PREFIX) => Ok(Credential::ApiKey(t)),
            t => Ok(Credential::Jwt(t)),
        };
    }
    match headers.get(X_API_KEY) {
        Some(value) => Ok(Credential::ApiKey(
            value.to_str().map_err(|_| AuthError::UnknownApiKey)?.trim(),
        )),
        None => Err(AuthError::Missing),
    }
}
