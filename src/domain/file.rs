//! A stored file's metadata: the bytes live in object storage under an opaque key.

use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub id: Uuid,
    pub owner: String,
    /// The client's name, cleaned for display; never used as a path.
    pub display_name: String,
    /// The verified media type (declared and sniffed agree).
    pub mime: String,
    pub size: i64,
    /// Hex SHA-256 of the bytes; also the ETag.
    pub sha256: String,
    /// Where the bytes are: derived from the id only.
    pub storage_key: String,
    pub created_at: OffsetDateTime,
    pub deleted_at: Option<OffsetDateTime>,
}
