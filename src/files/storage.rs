//! Where file bytes live, behind object_store: a local directory (the embedded default) or
//! S3-compatible object storage, chosen by config alone.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;

use crate::config::{FilesBackend, FilesConfig};

pub fn build(config: &FilesConfig) -> Result<Arc<dyn ObjectStore>, String> {
    match config.backend {
        FilesBackend::Local => {
            std::fs::create_dir_all(&config.local_dir)
                .map_err(|e| format!("files.local_dir {}: {e}", config.local_dir))?;
            let store = LocalFileSystem::new_with_prefix(&config.local_dir)
                .map_err(|e| format!("files.local_dir {}: {e}", config.local_dir))?
                // Deleting a file also removes directories it leaves empty. (Uploads go to a
                // staging file renamed into place on completion; an abort removes it.)
                .with_automatic_cleanup(true);
            Ok(Arc::new(store))
        }
        FilesBackend::S3 => {
            crate::tls::ensure_crypto_provider();
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(&config.s3_bucket)
                .with_region(&config.s3_region)
                .with_allow_http(config.s3_allow_http);
            if !config.s3_endpoint.is_empty() {
                builder = builder.with_endpoint(&config.s3_endpoint);
            }
            if !config.s3_access_key_id.is_empty() {
                builder = builder
                    .with_access_key_id(&config.s3_access_key_id)
                    .with_secret_access_key(config.s3_secret_access_key.expose());
            }
            builder
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
                .map_err(|e| format!("files (s3): {e}"))
        }
    }
}
