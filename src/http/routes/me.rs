//! The caller's data as a whole: `GET /v1/me/export` and `DELETE /v1/me`.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::Principal;
use crate::error::{ApiError, ErrorEnvelope};
use crate::http::extract::ApiJson;
use crate::state::AppState;
use crate::store::PurgeReport;
use crate::user_data;

/// Everything Colloquy holds about you, as one JSON document that streams as it is read:
/// `{format, user_id, exported_at, conversations: [{…, messages: […]}], files: […],
/// usage: […], api_keys: […]}`. Deleted conversations and files are included (with
/// `deleted_at`) until they are purged. File bytes are downloaded from `/v1/files/{id}`.
#[utoipa::path(get, path = "/v1/me/export", tag = "account", operation_id = "export_my_data",
    responses(
        (status = 200, description = "The export (streamed)", content_type = "application/json", body = Object),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
    ))]
pub async fn export(State(state): State<AppState>, principal: Principal) -> Response {
    let hashes = user_data::user_hashes(&state.auth, &principal);
    let body = Body::from_stream(user_data::export::stream(
        state.store.clone(),
        &principal,
        hashes,
    ));
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"colloquy-export.json\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// What erasure works with, from the app's state.
pub(crate) fn services(state: &AppState) -> user_data::Services<'_> {
    user_data::Services {
        store: state.store.as_ref(),
        files: &state.files,
        auth: &state.auth,
        chat: &state.chat,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseMe {
    /// Your user id (the token's subject), typed out to confirm.
    pub confirm: String,
}

/// Deletes all of your data for good: conversations and messages, files and their bytes,
/// API keys, usage records. Needs a token (not an API key) and `confirm` set to your user
/// id. Your identity provider's account is not touched: signing in again starts afresh.
#[utoipa::path(delete, path = "/v1/me", tag = "account", operation_id = "erase_my_data",
    request_body = EraseMe,
    responses(
        (status = 200, description = "What was deleted", body = PurgeReport),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: an API key cannot do this", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`: `confirm` is not your user id", body = ErrorEnvelope),
    ))]
pub async fn erase(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<EraseMe>,
) -> Result<ApiJson<PurgeReport>, ApiError> {
    let report = user_data::erase_own(services(&state), &principal, &body.confirm).await?;
    // Their cap went with their data: the cached copy goes too.
    state.budgets.forget(&principal.user_id);
    Ok(ApiJson(report))
}
