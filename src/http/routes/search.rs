//! Full-text search over the caller's messages.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::conversations::search::{self, SearchResult};
use crate::domain::Principal;
use crate::error::{ApiError, ErrorEnvelope};
use crate::http::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Words to find, all of them; "quoted words" must appear together. Other punctuation
    /// and operators are ignored. Only the first 16 words count.
    pub q: String,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchPage {
    /// Best match first.
    pub data: Vec<SearchResult>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// Your messages that contain the words of `q`, in your conversations that are not deleted
/// (archived ones included), best match first. A query with no words finds nothing.
#[utoipa::path(get, path = "/v1/search", tag = "conversations", operation_id = "search_messages",
    params(SearchQuery),
    responses(
        (status = 200, description = "A page of matching messages", body = SearchPage),
        (status = 401, description = "`unauthorized`", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`: no `q`, a bad `limit` or `cursor`", body = ErrorEnvelope),
    ))]
pub async fn search(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<ApiJson<SearchPage>, ApiError> {
    let (data, next_cursor) = search::search(
        state.store.as_ref(),
        &principal,
        &query.q,
        query.cursor.as_deref(),
        query.limit,
    )
    .await?;
    Ok(ApiJson(SearchPage {
        data,
        has_more: next_cursor.is_some(),
        next_cursor,
    }))
}
