//! File metadata; the bytes live in the object store. On SQLite.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::SqliteStore;
use super::{ts, ts_opt};
use crate::domain::StoredFile;
use crate::store::{FileStore, StoreError, rows};

#[async_trait]
impl FileStore for SqliteStore {
    async fn insert_file(&self, f: &StoredFile) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO files (",
            file_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(f.id)
        .bind(&f.owner)
        .bind(&f.display_name)
        .bind(&f.mime)
        .bind(f.size)
        .bind(&f.sha256)
        .bind(&f.storage_key)
        .bind(ts(f.created_at)?)
        .bind(ts_opt(f.deleted_at)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_file(&self, id: Uuid) -> Result<Option<StoredFile>, StoreError> {
        let sql = concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE id = ? AND deleted_at IS NULL"
        );
        let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::file).transpose()
    }

    async fn list_files(
        &self,
        owner: &str,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<StoredFile>, StoreError> {
        let sql = concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE owner = ?1 AND deleted_at IS NULL AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
        );
        let rows = sqlx::query(sql)
            .bind(owner)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::file).collect()
    }

    async fn remove_file(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM files WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_file(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE files SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL")
                .bind(ts(at)?)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }
}
