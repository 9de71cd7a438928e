//! One rustls crypto provider (ring) for the whole process, installed before any TLS client
//! is built; sqlx uses the same one.

use std::sync::Once;

pub fn ensure_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err means another provider was installed first, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
