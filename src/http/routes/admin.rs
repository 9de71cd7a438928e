//! Admin routes: `DELETE /v1/admin/users/{user_id}` erases a user's data.

use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::Principal;
use crate::error::{ApiError, ErrorEnvelope};
use crate::http::extract::ApiJson;
use crate::state::AppState;
use crate::store::PurgeReport;
use crate::user_data;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseUser {
    /// The user id again, typed out to confirm.
    pub confirm: String,
    /// The user's email, when their tokens carry one: their usage rows are filed under a
    /// hash of it.
    pub email: Option<String>,
}

/// Deletes all of a user's data for good, as `DELETE /v1/me` would. Admins only, with a
/// token; `confirm` must repeat the user id.
#[utoipa::path(delete, path = "/v1/admin/users/{user_id}", tag = "admin", operation_id = "erase_user_data",
    params(("user_id" = String, Path, description = "The user id (token subject)")),
    request_body = EraseUser,
    responses(
        (status = 200, description = "What was deleted", body = PurgeReport),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: not an admin, or an API key", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`: `confirm` does not repeat the user id", body = ErrorEnvelope),
    ))]
pub async fn erase_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<String>,
    ApiJson(body): ApiJson<EraseUser>,
) -> Result<ApiJson<PurgeReport>, ApiError> {
    let user_id = crate::http::extract::user_id_param(user_id)?;
    let report = user_data::erase_user(
        crate::http::routes::me::services(&state),
        &principal,
        &user_id,
        &body.confirm,
        body.email.as_deref(),
    )
    .await?;
    state.budgets.forget(&user_id);
    Ok(ApiJson(report))
}
