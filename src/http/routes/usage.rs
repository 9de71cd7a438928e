//! Usage reports: `GET /v1/usage` (yours) and `GET /v1/admin/usage` (anyone's).

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::domain::Principal;
use crate::error::{ApiError, ErrorEnvelope};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::usage::{self, UsageReport, UsageRequest};
use crate::user_data;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Start (inclusive): an RFC 3339 time or a date (midnight UTC). Default: 30 days
    /// before `to`.
    pub from: Option<String>,
    /// End (exclusive). Default: now.
    pub to: Option<String>,
    /// `day` (the default, UTC), `model` or `specialist`.
    pub group_by: Option<String>,
}

/// Your provider calls in a time range, summed by day, model or specialist: requests,
/// successes, tokens and cost. Totals equal the sums over every call exactly.
#[utoipa::path(get, path = "/v1/usage", tag = "usage", operation_id = "my_usage",
    params(UsageQuery),
    responses(
        (status = 200, description = "The report", body = UsageReport),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`: `from`, `to` or `group_by`", body = ErrorEnvelope),
    ))]
pub async fn mine(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<ApiJson<UsageReport>, ApiError> {
    let hashes = user_data::user_hashes(&state.auth, &principal);
    let report = usage::own(state.store.as_ref(), &hashes, request(&query)).await?;
    Ok(ApiJson(report))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AdminUsageQuery {
    /// Whose usage (the token subject); everyone's when absent.
    pub user_id: Option<String>,
    /// The user's email, when their tokens carry one: their calls are filed under its hash.
    pub email: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub group_by: Option<String>,
}

/// Any user's usage, or everyone's, as `GET /v1/usage` reports it. Admins only.
#[utoipa::path(get, path = "/v1/admin/usage", tag = "admin", operation_id = "admin_usage",
    params(AdminUsageQuery),
    responses(
        (status = 200, description = "The report", body = UsageReport),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`", body = ErrorEnvelope),
    ))]
pub async fn admin(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<AdminUsageQuery>,
) -> Result<ApiJson<UsageReport>, ApiError> {
    if query.email.is_some() && query.user_id.is_none() {
        return Err(ApiError::invalid_field(
            "email",
            "Invalid field `email`: give it with `user_id`",
        ));
    }
    let hashes = query.user_id.as_deref().map(|user_id| {
        let mut hashes = vec![state.auth.user_hash(None, user_id)];
        if let Some(email) = query.email.as_deref() {
            hashes.push(state.auth.user_hash(Some(email), user_id));
        }
        hashes
    });
    let request = UsageRequest {
        from: query.from.as_deref(),
        to: query.to.as_deref(),
        group_by: query.group_by.as_deref(),
    };
    let report = usage::admin(state.store.as_ref(), &principal, hashes.as_deref(), request).await?;
    Ok(ApiJson(report))
}

fn request(query: &UsageQuery) -> UsageRequest<'_> {
    UsageRequest {
        from: query.from.as_deref(),
        to: query.to.as_deref(),
        group_by: query.group_by.as_deref(),
    }
}
