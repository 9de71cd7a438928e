//! File metadata; the bytes live in the object store.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;
use crate::domain::StoredFile;

#[async_trait]
pub trait FileStore: Send + Sync {
    async fn insert_file(&self, file: &StoredFile) -> Result<(), StoreError>;

    /// A file by id, unless deleted.
    async fn get_file(&self, id: Uuid) -> Result<Option<StoredFile>, StoreError>;

    /// An owner's live files, newest first; `before` is the cursor.
    async fn list_files(
        &self,
        owner: &str,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<StoredFile>, StoreError>;

    /// Removes a file's row for good (undoing a failed upload).
    async fn remove_file(&self, id: Uuid) -> Result<(), StoreError>;

    /// Marks a file deleted; true when this call did.
    async fn delete_file(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError>;
}
