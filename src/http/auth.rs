//! The auth layer of the protected router: a valid bearer token or 401, then a `Principal`
//! in the request extensions for the `Principal` extractor.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn require_principal(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let outcome = bearer_token(&request).and_then(|token| state.jwt.verify(token));
    match outcome {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(reason) => {
            // An audit event: the reason, never the credential.
            tracing::warn!(target: "colloquy::audit", event = "auth_failed", reason = %reason);
            ApiError::unauthorized(match reason {
                AuthError::Missing => "Send `Authorization: Bearer <token>`.",
                AuthError::WrongScheme => "Only the Bearer scheme is accepted.",
                AuthError::Expired => "The token has expired.",
                _ => "The token is not valid.",
            })
            .into_response()
        }
    }
}

fn bearer_token(request: &Request) -> Result<&str, AuthError> {
    let value = request
        .headers()
        .get(AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::WrongScheme)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::WrongScheme);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}
