//! Files: `POST /v1/files` (multipart), `GET /v1/files`, `GET /v1/files/{id}`,
//! `GET /v1/files/{id}/content`, `GET /v1/files/{id}/text`, `DELETE /v1/files/{id}`.

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::Instrument;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{Principal, StoredFile};
use crate::error::{ApiError, ErrorEnvelope};
use crate::files::{ByteRange, FileError, names};
use crate::http::extract::{ApiJson, ApiQuery, path_id};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct FileView {
    pub id: Uuid,
    /// The uploaded name, cleaned for display.
    pub name: String,
    /// The verified media type.
    #[schema(example = "application/pdf")]
    pub mime: String,
    pub size: i64,
    pub sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<StoredFile> for FileView {
    fn from(f: StoredFile) -> Self {
        Self {
            id: f.id,
            name: f.display_name,
            mime: f.mime,
            size: f.size,
            sha256: f.sha256,
            created_at: f.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FilePage {
    pub data: Vec<FileView>,
    pub next_cursor: Option<Uuid>,
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Uploaded {
    pub data: Vec<FileView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileText {
    pub text: String,
    /// True when the text was cut at `files.text_budget_chars`.
    pub truncated: bool,
}

/// The multipart form: one or more parts, each a file with its filename and Content-Type.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    #[schema(value_type = Vec<String>, format = Binary)]
    files: Vec<Vec<u8>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// Page size, 1 to 100 (default 50).
    pub limit: Option<i64>,
}

/// Uploads files (multipart/form-data, any part names). Each part is streamed to storage
/// with its type checked exactly against its content; on any refusal nothing is kept.
#[utoipa::path(post, path = "/v1/files", tag = "files", operation_id = "upload_files",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored", body = Uploaded),
        (status = 400, description = "`bad_request`: a broken multipart body", body = ErrorEnvelope),
        (status = 403, description = "`forbidden`: viewers cannot upload", body = ErrorEnvelope),
        (status = 413, description = "`payload_too_large`: a file over `files.max_upload_bytes`", body = ErrorEnvelope),
        (status = 415, description = "`unsupported_media_type`: a type not accepted, or content that does not match it", body = ErrorEnvelope),
        (status = 422, description = "`invalid_field`: no file, an empty one, or too many", body = ErrorEnvelope),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    principal: Principal,
    request: Request,
) -> Result<(StatusCode, ApiJson<Uploaded>), ApiError> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send files as multipart/form-data.",
        ));
    }
    let mut multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let max_files = state.config.files.max_files_per_upload;
    // If this request is cancelled (client gone, deadline) the guard undoes what was saved.
    let mut saved = Undo {
        files: state.files.clone(),
        saved: Vec::new(),
    };
    let outcome: Result<(), ApiError> = async {
        while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
            if field.file_name().is_none() {
                // A plain form field: not a file, nothing to store.
                continue;
            }
            if saved.saved.len() == max_files {
                return Err(ApiError::invalid_field(
                    "files",
                    format!("At most {max_files} files per upload."),
                ));
            }
            let name = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(str::to_owned);
            let file = state
                .files
                .save(&principal, name.as_deref(), content_type.as_deref(), field)
                .await?;
            saved.saved.push(file);
        }
        if saved.saved.is_empty() {
            return Err(ApiError::invalid_field(
                "files",
                "Send at least one file part (with a filename).",
            ));
        }
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        let files = std::mem::take(&mut saved.saved);
        state.files.undo(&files).await;
        // Read (and discard) what the client is still sending, within bounds, so it gets
        // this answer instead of a reset connection.
        let drain = async { while let Ok(Some(_field)) = multipart.next_field().await {} };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
        return Err(e);
    }
    Ok((
        StatusCode::CREATED,
        ApiJson(Uploaded {
            data: std::mem::take(&mut saved.saved)
                .into_iter()
                .map(FileView::from)
                .collect(),
        }),
    ))
}

/// Files saved by an upload that has not finished: removed if the request is dropped.
struct Undo {
    files: std::sync::Arc<crate::files::Files>,
    saved: Vec<StoredFile>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if self.saved.is_empty() {
            return;
        }
        let (files, saved) = (self.files.clone(), std::mem::take(&mut self.saved));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { files.undo(&saved).await }.in_current_span());
        }
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE)
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("Broken multipart body: {}", e.body_text()),
        )
    }
}

/// Your files, newest first.
#[utoipa::path(get, path = "/v1/files", tag = "files", operation_id = "list_files",
    params(ListQuery),
    responses((status = 200, description = "A page of files", body = FilePage)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<ApiJson<FilePage>, ApiError> {
    let (files, has_more) = state.files.list(&principal, q.cursor, q.limit).await?;
    let next_cursor = if has_more {
        files.last().map(|f| f.id)
    } else {
        None
    };
    Ok(ApiJson(FilePage {
        data: files.into_iter().map(FileView::from).collect(),
        next_cursor,
        has_more,
    }))
}

/// One of your files' metadata.
#[utoipa::path(get, path = "/v1/files/{id}", tag = "files", operation_id = "get_file",
    params(("id" = Uuid, Path, description = "File id")),
    responses(
        (status = 200, description = "The file", body = FileView),
        (status = 404, description = "`not_found` (also for another user's file)", body = ErrorEnvelope),
    ))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<ApiJson<FileView>, ApiError> {
    let id = path_id(&id, "file")?;
    Ok(ApiJson(state.files.get(&principal, id).await?.into()))
}

/// The bytes, as an attachment with the verified type; supports `Range` and `If-None-Match`.
#[utoipa::path(get, path = "/v1/files/{id}/content", tag = "files", operation_id = "download_file",
    params(("id" = Uuid, Path, description = "File id")),
    responses(
        (status = 200, description = "The bytes", content_type = "application/octet-stream"),
        (status = 206, description = "The requested range", content_type = "application/octet-stream"),
        (status = 304, description = "Not modified (`If-None-Match`)"),
        (status = 404, description = "`not_found` (also for another user's file)", body = ErrorEnvelope),
        (status = 416, description = "`range_not_satisfiable`", body = ErrorEnvelope),
    ))]
pub async fn content(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "file")?;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);
    if let Some(tag) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let file = state.files.get(&principal, id).await?;
        let etag = format!("\"{}\"", file.sha256);
        if tag.split(',').any(|t| t.trim() == etag || t.trim() == "*") {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
        }
    }
    let download = match state.files.download(&principal, id, range).await {
        Ok(d) => d,
        Err(FileError::RangeNotSatisfiable { size }) => {
            let mut response =
                ApiError::from(FileError::RangeNotSatisfiable { size }).into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}"))
                    .unwrap_or(HeaderValue::from_static("bytes */0")),
            );
            return Ok(response);
        }
        Err(e) => return Err(e.into()),
    };
    let file = &download.file;
    let mut response = Response::new(Body::from_stream(download.body));
    let h = response.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("invalid"));
    h.insert(header::CONTENT_TYPE, value(&file.mime));
    h.insert(
        header::CONTENT_DISPOSITION,
        value(&names::content_disposition(&file.display_name)),
    );
    h.insert(header::ETAG, value(&format!("\"{}\"", file.sha256)));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    match download.range {
        Some((start, end)) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_RANGE,
                value(&format!("bytes {start}-{}/{}", end - 1, file.size)),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
        }
        None => {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(file.size as u64));
        }
    }
    Ok(response)
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` (a single range; anything else is ignored and the
/// whole file is served, as RFC 9110 allows).
fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    match (start.trim(), end.trim()) {
        ("", suffix) => Some(ByteRange::Last(suffix.parse().ok()?)),
        (s, "") => Some(ByteRange::From(s.parse().ok()?, None)),
        (s, e) => {
            let (s, e): (u64, u64) = (s.parse().ok()?, e.parse().ok()?);
            (s <= e).then_some(ByteRange::From(s, Some(e)))
        }
    }
}

/// The file's text, as the chat will see it.
#[utoipa::path(get, path = "/v1/files/{id}/text", tag = "files", operation_id = "file_text",
    params(("id" = Uuid, Path, description = "File id")),
    responses(
        (status = 200, description = "Extracted text", body = FileText),
        (status = 404, description = "`not_found`", body = ErrorEnvelope),
        (status = 415, description = "`unsupported_media_type`: no text in this kind of file", body = ErrorEnvelope),
    ))]
pub async fn text(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<ApiJson<FileText>, ApiError> {
    let id = path_id(&id, "file")?;
    let (text, truncated) = state.files.text(&principal, id).await?;
    Ok(ApiJson(FileText { text, truncated }))
}

/// Deletes a file; its id is not found afterwards.
#[utoipa::path(delete, path = "/v1/files/{id}", tag = "files", operation_id = "delete_file",
    params(("id" = Uuid, Path, description = "File id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`", body = ErrorEnvelope),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id, "file")?;
    state.files.delete(&principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
