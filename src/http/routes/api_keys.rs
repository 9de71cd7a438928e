//! API keys: `POST /v1/api-keys`, `GET /v1/api-keys`, `DELETE /v1/api-keys/{id}`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::api_keys;
use crate::domain::{ApiKey, Principal, Role};
use crate::error::{ApiError, ErrorEnvelope};
use crate::http::extract::{ApiJson, ApiQuery, path_id};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// What the key is for, e.g. "nightly report job"; 1 to 100 characters.
    pub name: String,
    /// `viewer`, `user` or `admin`; at most your own role. Default: your role.
    #[schema(value_type = Option<String>, example = "user")]
    pub role: Option<Role>,
}

/// A key as listed: never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    /// The owner's user id.
    pub owner: String,
    pub name: String,
    /// The key's first characters, to recognise it.
    #[schema(example = "ck_Qm9vZ2xlU")]
    pub prefix: String,
    #[schema(value_type = String, example = "user")]
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            owner: k.owner,
            name: k.name,
            prefix: k.prefix,
            role: k.role,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The whole key. Shown this once: store it now.
    #[schema(example = "ck_Qm9vZ2xlUmVhbGx5TG9uZ1JhbmRvbUJ5dGVzSGVyZTA")]
    pub secret: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Admins only: list this user's keys instead of your own.
    pub owner: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// Page size, 1 to 100 (default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyPage {
    pub data: Vec<ApiKeyView>,
    pub next_cursor: Option<Uuid>,
    pub has_more: bool,
}

/// Creates an API key for programs; the secret is in this response only.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", operation_id = "create_api_key",
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created; `secret` is shown only now", body = CreatedApiKey),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: role above your own", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`", body = ErrorEnvelope),
    ))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> Result<(StatusCode, ApiJson<CreatedApiKey>), ApiError> {
    let created = api_keys::create(state.store.as_ref(), &principal, &body.name, body.role).await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedApiKey {
            key: created.key.into(),
            secret: created.secret,
        }),
    ))
}

/// Lists your API keys (an admin may pass `owner`), newest first, revoked ones included.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", operation_id = "list_api_keys",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of keys", body = ApiKeyPage),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: another user's keys, unless you are an admin", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`: bad limit or cursor", body = ErrorEnvelope),
    ))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<ApiJson<ApiKeyPage>, ApiError> {
    let (keys, has_more) = api_keys::list(
        state.store.as_ref(),
        &principal,
        query.owner.as_deref(),
        query.cursor,
        query.limit,
    )
    .await?;
    let next_cursor = if has_more {
        keys.last().map(|k| k.id)
    } else {
        None
    };
    Ok(ApiJson(ApiKeyPage {
        data: keys.into_iter().map(ApiKeyView::from).collect(),
        next_cursor,
        has_more,
    }))
}

/// Revokes a key; it stops working on every instance within `auth.api_key_cache_secs`.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", operation_id = "revoke_api_key",
    params(("id" = Uuid, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked (or already revoked)"),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 404, description = "`not_found`: no such key, or another user's", body = ErrorEnvelope),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id, "api key")?;
    api_keys::revoke(state.store.as_ref(), &state.auth, &principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
