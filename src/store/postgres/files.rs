//! File metadata; the bytes live in the object store. On Postgres.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::PostgresStore;
use crate::domain::StoredFile;
use crate::store::{FileStore, StoreError, rows};

#[async_trait]
impl FileStore for PostgresStore {
    async fn insert_file(&self, f: &StoredFile) -> Result<(), StoreError> {
        sqlx::query(concat!(
            "INSERT INTO files (",
            file_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(f.id)
        .bind(&f.owner)
        .bind(&f.display_name)
        .bind(&f.mime)
        .bind(f.size)
        .bind(&f.sha256)
        .bind(&f.storage_key)
        .bind(f.created_at)
        .bind(f.deleted_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_file(&self, id: Uuid) -> Result<Option<StoredFile>, StoreError> {
        let sql = concat!(
            "SELECT ",
            file_columns!(),
            " FROM files WHERE id = $1 AND deleted_at IS NULL"
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
            " FROM files WHERE owner = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
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
        sqlx::query("DELETE FROM files WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_file(&self, id: Uuid, at: OffsetDateTime) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE files SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL")
                .bind(id)
                .bind(at)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }
}
