//! Monthly budgets: `GET /v1/me/budget` (yours, with this month's spend) and
//! `GET|PUT|DELETE /v1/admin/users/{user_id}/budget` (an admin sets anyone's cap).

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::budgets::{Cap, CapSource, Payer, Standing};
use crate::domain::{Principal, Role};
use crate::error::{ApiError, ErrorEnvelope};
use crate::http::extract::{ApiJson, user_id_param};
use crate::state::AppState;

/// The largest cap accepted: a billion dollars.
const MAX_CAP_NANO_USD: i64 = 1_000_000_000_000_000_000;

/// Your budget this month. Figures are nano-USD (1 USD = 1,000,000,000).
#[derive(Debug, Serialize, ToSchema)]
pub struct MyBudget {
    /// The UTC calendar month, `YYYY-MM`.
    pub month: String,
    /// Your cap; null when you have none.
    pub monthly_cap_nano_usd: Option<i64>,
    pub source: CapSource,
    /// What this month's finished calls cost.
    pub spent_nano_usd: i64,
    /// Held for calls running now (their worst case, until they finish).
    pub reserved_nano_usd: i64,
    /// What is left for new calls; null without a cap.
    pub remaining_nano_usd: Option<i64>,
    /// When the month, and the spend, start over.
    #[serde(with = "time::serde::rfc3339")]
    pub resets_at: OffsetDateTime,
}

impl From<Standing> for MyBudget {
    fn from(s: Standing) -> Self {
        Self {
            month: s.month.label(),
            monthly_cap_nano_usd: s.cap.monthly_nano_usd,
            source: s.cap.source,
            spent_nano_usd: s.spent_nano_usd,
            reserved_nano_usd: s.reserved_nano_usd,
            remaining_nano_usd: s.remaining_nano_usd(),
            resets_at: s.month.end,
        }
    }
}

/// Your monthly spend cap, what this month's calls cost and what is left.
#[utoipa::path(get, path = "/v1/me/budget", tag = "budgets", operation_id = "my_budget",
    responses(
        (status = 200, description = "Your budget this month", body = MyBudget),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 503, description = "`budget_unavailable`", body = ErrorEnvelope),
    ))]
pub async fn mine(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<ApiJson<MyBudget>, ApiError> {
    let standing = state
        .budgets
        .standing(Payer {
            user_id: &principal.user_id,
            user_hash: &principal.user_hash,
        })
        .await?;
    Ok(ApiJson(standing.into()))
}

/// A user's cap as an admin sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetSetting {
    pub user_id: String,
    /// The cap in force; null: none.
    pub monthly_cap_nano_usd: Option<i64>,
    /// `user` when set for this user, else `default`.
    pub source: CapSource,
    /// Who set it, and when (for `source = user`).
    pub updated_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
}

fn setting(user_id: String, cap: Cap) -> BudgetSetting {
    BudgetSetting {
        user_id,
        monthly_cap_nano_usd: cap.monthly_nano_usd,
        source: cap.source,
        updated_by: cap.set.as_ref().map(|s| s.updated_by.clone()),
        updated_at: cap.set.map(|s| s.updated_at),
    }
}

fn admin_only(principal: &Principal) -> Result<(), ApiError> {
    if principal.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(ApiError::forbidden("Only admins manage budgets."))
    }
}

/// A user's monthly cap and where it comes from. Admins only.
#[utoipa::path(get, path = "/v1/admin/users/{user_id}/budget", tag = "admin", operation_id = "get_user_budget",
    params(("user_id" = String, Path, description = "The user id (token subject)")),
    responses(
        (status = 200, description = "The cap", body = BudgetSetting),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`: `user_id`", body = ErrorEnvelope),
    ))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<String>,
) -> Result<ApiJson<BudgetSetting>, ApiError> {
    admin_only(&principal)?;
    let user_id = user_id_param(user_id)?;
    let cap = state.budgets.cap(&user_id).await?;
    Ok(ApiJson(setting(user_id, cap)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutBudget {
    /// The monthly cap in nano-USD (0 allows only free models); null: no cap for this user.
    /// Required.
    #[serde(default, deserialize_with = "crate::http::extract::present")]
    #[schema(value_type = Option<i64>, required = true)]
    pub monthly_nano_usd: Option<Option<i64>>,
}

/// Sets a user's monthly cap over the default. It applies to their next call on this
/// instance, and within `budgets.cache_secs` on the others. Admins only.
#[utoipa::path(put, path = "/v1/admin/users/{user_id}/budget", tag = "admin", operation_id = "put_user_budget",
    params(("user_id" = String, Path, description = "The user id (token subject)")),
    request_body = PutBudget,
    responses(
        (status = 200, description = "The cap now in force", body = BudgetSetting),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`: `monthly_nano_usd` missing, negative or too large", body = ErrorEnvelope),
    ))]
pub async fn put(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<String>,
    ApiJson(body): ApiJson<PutBudget>,
) -> Result<ApiJson<BudgetSetting>, ApiError> {
    admin_only(&principal)?;
    let user_id = user_id_param(user_id)?;
    let Some(cap) = body.monthly_nano_usd else {
        return Err(ApiError::invalid_field(
            "monthly_nano_usd",
            "Invalid field `monthly_nano_usd`: required (a number of nano-USD, or null for no cap)",
        ));
    };
    if cap.is_some_and(|c| !(0..=MAX_CAP_NANO_USD).contains(&c)) {
        return Err(ApiError::invalid_field(
            "monthly_nano_usd",
            format!("Invalid field `monthly_nano_usd`: between 0 and {MAX_CAP_NANO_USD}, or null"),
        ));
    }
    let cap = state
        .budgets
        .set_cap(&user_id, Some(cap), &principal.user_id)
        .await?;
    tracing::info!(user = %user_id, cap = ?cap.monthly_nano_usd, by = %principal.user_id, "budget set");
    Ok(ApiJson(setting(user_id, cap)))
}

/// Removes a user's own cap: the default applies again. Admins only.
#[utoipa::path(delete, path = "/v1/admin/users/{user_id}/budget", tag = "admin", operation_id = "delete_user_budget",
    params(("user_id" = String, Path, description = "The user id (token subject)")),
    responses(
        (status = 200, description = "The cap now in force (the default)", body = BudgetSetting),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`: `user_id`", body = ErrorEnvelope),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<String>,
) -> Result<ApiJson<BudgetSetting>, ApiError> {
    admin_only(&principal)?;
    let user_id = user_id_param(user_id)?;
    let cap = state
        .budgets
        .set_cap(&user_id, None, &principal.user_id)
        .await?;
    tracing::info!(user = %user_id, by = %principal.user_id, "budget removed");
    Ok(ApiJson(setting(user_id, cap)))
}
