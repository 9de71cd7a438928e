//! A user's data as a whole: exported (GDPR access) and erased (GDPR erasure) through the
//! one sanctioned purge path, by the user or by an admin.

pub mod export;

use crate::auth::Authenticator;
use crate::domain::{AuthMethod, Principal, Role};
use crate::files::{FileError, Files};
use crate::store::{PurgeReport, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum UserDataError {
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Files(#[from] FileError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whose data to erase, and the hashes their usage rows are filed under.
pub struct Erasure<'a> {
    pub user_id: &'a str,
    /// The confirmation the caller typed: must be `user_id`.
    pub confirm: &'a str,
    pub user_hashes: Vec<String>,
}

/// The caller erases their own data. Only with a token: an API key (perhaps leaked, perhaps
/// a script's) may not delete an account.
pub async fn erase_own(
    store: &dyn Store,
    files: &Files,
    auth: &Authenticator,
    principal: &Principal,
    confirm: &str,
) -> Result<PurgeReport, UserDataError> {
    if principal.method != AuthMethod::Jwt {
        return Err(UserDataError::Forbidden(
            "an account's data can be deleted with a token, not an API key",
        ));
    }
    let erasure = Erasure {
        user_id: &principal.user_id,
        confirm,
        user_hashes: vec![principal.user_hash.clone()],
    };
    erase(store, files, auth, principal, erasure).await
}

/// An admin erases a user's data. Usage rows are filed under a hash of the user's email
/// when their tokens carry one, so `email` may be given to find those too; the hash of the
/// user id, and those of the user's API keys, are always included.
pub async fn erase_user(
    store: &dyn Store,
    files: &Files,
    auth: &Authenticator,
    admin: &Principal,
    user_id: &str,
    confirm: &str,
    email: Option<&str>,
) -> Result<PurgeReport, UserDataError> {
    if !admin.has_role(Role::Admin) || admin.method != AuthMethod::Jwt {
        return Err(UserDataError::Forbidden(
            "only an admin, with a token, can delete another user's data",
        ));
    }
    let mut user_hashes = vec![auth.user_hash(None, user_id)];
    if let Some(email) = email {
        user_hashes.push(auth.user_hash(Some(email), user_id));
    }
    let erasure = Erasure {
        user_id,
        confirm,
        user_hashes,
    };
    erase(store, files, auth, admin, erasure).await
}

async fn erase(
    store: &dyn Store,
    files: &Files,
    auth: &Authenticator,
    by: &Principal,
    mut erasure: Erasure<'_>,
) -> Result<PurgeReport, UserDataError> {
    if erasure.confirm != erasure.user_id {
        return Err(UserDataError::Invalid {
            field: "confirm",
            problem: "must be the user id whose data is to be deleted".into(),
        });
    }
    let owner = erasure.user_id;
    // The keys' hashes: their usage rows, and this instance's cache of their verdicts.
    let mut keys = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_api_keys(owner, before, 200).await?;
        before = page.last().map(|k| k.id);
        let full = page.len() == 200;
        keys.extend(page);
        if !full {
            break;
        }
    }
    erasure
        .user_hashes
        .extend(keys.iter().map(|k| k.user_hash.clone()));
    erasure.user_hashes.sort();
    erasure.user_hashes.dedup();
    // Bytes first: if storage fails, the rows still say what is left to delete, and the
    // request can be repeated.
    files.purge_bytes(owner).await?;
    let report = store.purge_owner(owner, &erasure.user_hashes).await?;
    for key in &keys {
        auth.forget_key(&key.hash);
    }
    tracing::info!(
        target: "colloquy::audit",
        event = "user_data_erased",
        by = %by.user_hash,
        conversations = report.conversations,
        messages = report.messages,
        files = report.files,
        api_keys = report.api_keys,
        usage_logs = report.usage_logs,
    );
    Ok(report)
}
