//! The files service: streamed uploads with exact type checks, owner-only access, downloads
//! with ranges, deletion, and text extraction for the chat (extracted once, then cached).

pub mod extract;
pub mod names;
pub mod sniff;
pub mod storage;

use std::sync::Arc;
use tracing::Instrument;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::FilesConfig;
use crate::domain::ids::now_utc;
use crate::domain::{Principal, Role, StoredFile, new_id};
use crate::store::{Store, StoreError};
use sniff::{Kind, Utf8Check};

/// Documents larger than this are not parsed for text (a parser holds the whole file).
const MAX_EXTRACT_BYTES: u64 = 32 << 20;
/// Bytes read before judging the content's type.
const SNIFF_BYTES: usize = 8192;
/// Upload parts in flight at once (each up to object_store's 5 MiB chunk): bounds memory.
const UPLOAD_CONCURRENCY: usize = 2;
pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("file not found")]
    NotFound,
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    UnsupportedType(String),
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("role {0:?} may not do this")]
    Forbidden(Role),
    #[error("range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("the upload broke off: {0}")]
    Upload(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<object_store::Error> for FileError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::NotFound,
            other => Self::Storage(other.to_string()),
        }
    }
}

/// A requested byte range, as `Range: bytes=...` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `a-b` (inclusive) or `a-` (to the end).
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Last(u64),
}

/// Bytes of a download and what they cover.
pub struct Download {
    pub file: StoredFile,
    /// The served byte range (inclusive start, exclusive end) when a range was asked for.
    pub range: Option<(u64, u64)>,
    pub body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, object_store::Error>> + Send>>,
}

pub struct Files {
    store: Arc<dyn Store>,
    objects: Arc<dyn ObjectStore>,
    prefix: String,
    allowed: Vec<Kind>,
    max_bytes: u64,
    text_budget: usize,
}

impl Files {
    pub fn new(config: &FilesConfig, store: Arc<dyn Store>) -> Result<Self, String> {
        let prefix = match config.backend {
            crate::config::FilesBackend::S3 => config.s3_prefix.trim_matches('/').to_owned(),
            crate::config::FilesBackend::Local => String::new(),
        };
        Ok(Self {
            objects: storage::build(config)?,
            store,
            prefix,
            allowed: config
                .allowed_types
                .iter()
                .filter_map(|t| Kind::of(t))
                .collect(),
            max_bytes: config.max_upload_bytes,
            text_budget: config.text_budget_chars,
        })
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn key(&self, id: Uuid, suffix: &str) -> String {
        // Derived from the id alone: the client's filename never reaches a path.
        if self.prefix.is_empty() {
            format!("files/{id}{suffix}")
        } else {
            format!("{}/files/{id}{suffix}", self.prefix)
        }
    }

    /// Streams one uploaded file to storage, checking its type and size on the way.
    /// On any refusal nothing is left stored.
    pub async fn save<S, E>(
        &self,
        principal: &Principal,
        declared_name: Option<&str>,
        declared_type: Option<&str>,
        mut body: S,
    ) -> Result<StoredFile, FileError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if !principal.has_role(Role::User) {
            return Err(FileError::Forbidden(principal.role));
        }
        let kind = declared_type
            .and_then(sniff::parse_declared)
            .filter(|k| self.allowed.contains(k))
            .ok_or_else(|| {
                FileError::UnsupportedType(format!(
                    "`{}` is not an accepted type",
                    declared_type.unwrap_or("(none)")
                ))
            })?;

        // Judge the type from the first bytes before storing anything.
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        let mut pending: Vec<Bytes> = Vec::new();
        while head.len() < SNIFF_BYTES {
            match body.next().await {
                Some(Ok(chunk)) => {
                    let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                    pending.push(chunk);
                }
                Some(Err(e)) => return Err(FileError::Upload(e.to_string())),
                None => break,
            }
        }
        if head.is_empty() {
            return Err(FileError::Invalid {
                field: "file",
                problem: "is empty".into(),
            });
        }
        if !sniff::head_matches(kind, &head) {
            return Err(FileError::UnsupportedType(format!(
                "the content is not {}",
                kind.mime()
            )));
        }

        let id = new_id();
        let key = self.key(id, "");
        let path = ObjectPath::from(key.as_str());
        let upload = self.objects.put_multipart(&path).await?;
        let mut writer = WriteMultipart::new(upload);
        let mut hasher = Sha256::new();
        let mut utf8 = kind.is_text().then(Utf8Check::default);
        let mut size: u64 = 0;
        let outcome: Result<(), FileError> = async {
            let mut chunks =
                futures_util::stream::iter(pending.into_iter().map(Ok)).chain(&mut body);
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e: E| FileError::Upload(e.to_string()))?;
                size += chunk.len() as u64;
                if size > self.max_bytes {
                    return Err(FileError::TooLarge {
                        limit: self.max_bytes,
                    });
                }
                hasher.update(&chunk);
                if let Some(check) = utf8.as_mut() {
                    check.feed(&chunk);
                }
                writer.wait_for_capacity(UPLOAD_CONCURRENCY).await?;
                writer.put(chunk);
            }
            if utf8.as_ref().is_some_and(|c| !c.is_valid()) {
                return Err(FileError::UnsupportedType(format!(
                    "the content is not valid UTF-8 {}",
                    kind.mime()
                )));
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(error = %abort, "could not abort a refused upload");
            }
            return Err(e);
        }
        let file = StoredFile {
            id,
            owner: principal.user_id.clone(),
            display_name: names::clean(declared_name, kind),
            mime: kind.mime().to_owned(),
            size: size as i64,
            sha256: hex::encode(hasher.finalize()),
            storage_key: key,
            created_at: now_utc(),
            deleted_at: None,
        };
        // Completing the upload and writing its row run to the end even if this request is
        // cancelled now, so bytes never outlive a missing row (or the other way round).
        let (store, objects, row) = (self.store.clone(), self.objects.clone(), file.clone());
        let committed = tokio::spawn(
            async move {
                writer.finish().await?;
                if let Err(e) = store.insert_file(&row).await {
                    let _ = objects.delete(&path).await;
                    return Err(FileError::from(e));
                }
                Ok(())
            }
            .in_current_span(),
        );
        committed
            .await
            .map_err(|e| FileError::Storage(e.to_string()))??;
        Ok(file)
    }

    /// Removes files saved earlier in a request that then failed (all or nothing).
    pub async fn undo(&self, files: &[StoredFile]) {
        for f in files {
            let _ = self.store.delete_file(f.id, now_utc()).await;
            let _ = self
                .objects
                .delete(&ObjectPath::from(f.storage_key.as_str()))
                .await;
        }
    }

    /// A file of the caller's; another user's is not found.
    pub async fn get(&self, principal: &Principal, id: Uuid) -> Result<StoredFile, FileError> {
        match self.store.get_file(id).await? {
            Some(f) if f.owner == principal.user_id => Ok(f),
            _ => Err(FileError::NotFound),
        }
    }

    pub async fn list(
        &self,
        principal: &Principal,
        cursor: Option<Uuid>,
        limit: Option<i64>,
    ) -> Result<(Vec<StoredFile>, bool), FileError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(FileError::Invalid {
                field: "limit",
                problem: format!("between 1 and {MAX_PAGE}"),
            });
        }
        let mut files = self
            .store
            .list_files(&principal.user_id, cursor, limit + 1)
            .await?;
        let more = files.len() as i64 > limit;
        files.truncate(limit as usize);
        Ok((files, more))
    }

    /// The bytes, whole or a range.
    pub async fn download(
        &self,
        principal: &Principal,
        id: Uuid,
        range: Option<ByteRange>,
    ) -> Result<Download, FileError> {
        let file = self.get(principal, id).await?;
        let size = file.size as u64;
        let served = match range {
            None => None,
            Some(range) => {
                let (start, end) = match range {
                    ByteRange::From(start, end) => {
                        (start, end.map_or(size, |e| e.saturating_add(1).min(size)))
                    }
                    ByteRange::Last(n) => (size.saturating_sub(n), size),
                };
                if start >= size || start >= end {
                    return Err(FileError::RangeNotSatisfiable { size });
                }
                Some((start, end))
            }
        };
        let options = GetOptions {
            range: served.map(|(s, e)| GetRange::Bounded(s..e)),
            ..GetOptions::default()
        };
        let result = self
            .objects
            .get_opts(&ObjectPath::from(file.storage_key.as_str()), options)
            .await?;
        Ok(Download {
            file,
            range: served,
            body: result.into_stream(),
        })
    }

    /// A (small) file's bytes, whole: for image attachments, which are bounded in size.
    pub async fn bytes(&self, principal: &Principal, id: Uuid) -> Result<Bytes, FileError> {
        let file = self.get(principal, id).await?;
        Ok(self
            .objects
            .get(&ObjectPath::from(file.storage_key.as_str()))
            .await?
            .bytes()
            .await?)
    }

    pub async fn delete(&self, principal: &Principal, id: Uuid) -> Result<(), FileError> {
        let file = self.get(principal, id).await?;
        self.store.delete_file(id, now_utc()).await?;
        for key in [file.storage_key.clone(), self.key(id, ".txt")] {
            match self.objects.delete(&ObjectPath::from(key.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::warn!(error = %e, "could not delete a file's bytes"),
            }
        }
        Ok(())
    }

    /// Deletes the bytes (and cached text) of every file `owner` has, deleted ones included;
    /// the rows are left for the store's purge. Stops at the first storage failure, so an
    /// erasure is retried rather than reported done with bytes left behind.
    pub async fn purge_bytes(&self, owner: &str) -> Result<u64, FileError> {
        let mut after = None;
        let mut removed = 0;
        loop {
            let page = self.store.owner_files(owner, after, 200).await?;
            let keys: Vec<(Uuid, String)> =
                page.iter().map(|f| (f.id, f.storage_key.clone())).collect();
            self.delete_bytes(&keys).await?;
            removed += keys.len() as u64;
            match page.last() {
                Some(last) if page.len() == 200 => after = Some(last.id),
                _ => return Ok(removed),
            }
        }
    }

    /// Deletes the bytes and cached text of files by id and storage key; already gone is
    /// fine, any other storage failure stops and is returned.
    pub async fn delete_bytes(&self, files: &[(Uuid, String)]) -> Result<(), FileError> {
        for (id, storage_key) in files {
            for key in [storage_key.clone(), self.key(*id, ".txt")] {
                match self.objects.delete(&ObjectPath::from(key.as_str())).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(FileError::Storage(e.to_string())),
                }
            }
        }
        Ok(())
    }

    /// The file's text for the chat, within the budget; extracted once, then read from a
    /// cached copy beside the file. Returns the text and whether it was cut.
    pub async fn text(&self, principal: &Principal, id: Uuid) -> Result<(String, bool), FileError> {
        let file = self.get(principal, id).await?;
        let kind = Kind::of(&file.mime).ok_or(FileError::NotFound)?;
        let cache = ObjectPath::from(self.key(id, ".txt").as_str());
        if let Ok(cached) = self.objects.get(&cache).await {
            let bytes = cached.bytes().await?;
            let (flag, text) = bytes
                .split_first()
                .map_or((b'0', &[][..]), |(f, t)| (*f, t));
            return Ok((String::from_utf8_lossy(text).into_owned(), flag == b'1'));
        }
        let source = ObjectPath::from(file.storage_key.as_str());
        let budget = self.text_budget;
        let bytes = if kind.is_text() {
            // Text needs no more than four bytes a character of the budget.
            let want = (budget as u64)
                .saturating_mul(4)
                .saturating_add(4)
                .min(file.size as u64);
            let options = GetOptions {
                range: Some(GetRange::Bounded(0..want)),
                ..GetOptions::default()
            };
            let mut bytes = self
                .objects
                .get_opts(&source, options)
                .await?
                .bytes()
                .await?
                .to_vec();
            // A range may end inside a character: keep whole characters only.
            let valid = match std::str::from_utf8(&bytes) {
                Ok(_) => bytes.len(),
                Err(e) => e.valid_up_to(),
            };
            bytes.truncate(valid);
            bytes
        } else if file.size as u64 > MAX_EXTRACT_BYTES {
            return Err(FileError::UnsupportedType(format!(
                "text is extracted from documents up to {} MiB",
                MAX_EXTRACT_BYTES >> 20
            )));
        } else {
            self.objects.get(&source).await?.bytes().await?.to_vec()
        };
        let (text, cut) =
            tokio::task::spawn_blocking(move || extract::extract(kind, &bytes, budget))
                .await
                // A panicking parser is a file we cannot read, not an outage.
                .map_err(|_| {
                    FileError::UnsupportedType("the file's text could not be read".into())
                })?
                .map_err(|e| FileError::UnsupportedType(e.to_string()))?;
        let cut = cut
            || (kind.is_text()
                && (text.len() as i64) < file.size
                && text.chars().count() >= budget);
        let mut cached = Vec::with_capacity(text.len() + 1);
        cached.push(if cut { b'1' } else { b'0' });
        cached.extend_from_slice(text.as_bytes());
        if let Err(e) = self.objects.put(&cache, cached.into()).await {
            tracing::warn!(error = %e, "could not cache extracted text");
        }
        Ok((text, cut))
    }
}
