//! A user's data as a whole: exported (GDPR access) and erased (GDPR erasure) through the
//! one sanctioned purge path, by the user or by an admin.

pub mod export;

use std::time::Duration;

use crate::auth::Authenticator;
use crate::chat::ChatService;
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

/// What erasure needs besides the store: file bytes, the key cache, the usage writer.
pub struct Services<'a> {
    pub store: &'a dyn Store,
    pub files: &'a Files,
    pub auth: &'a Authenticator,
    pub chat: &'a ChatService,
}

/// Every hash a user's usage rows may be filed under that can be known from the user:
/// the principal's own, and that of the user id alone (tokens without an email).
pub fn user_hashes(auth: &Authenticator, principal: &Principal) -> Vec<String> {
    let mut hashes = vec![
        principal.user_hash.clone(),
        auth.user_hash(None, &principal.user_id),
    ];
    hashes.dedup();
    hashes
}

/// The caller erases their own data. Only with a token: an API key (perhaps leaked, perhaps
/// a script's) may not delete an account.
pub async fn erase_own(
    services: Services<'_>,
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
        user_hashes: user_hashes(services.auth, principal),
    };
    erase(services, principal, erasure).await
}

/// An admin erases a user's data. Usage rows are filed under a hash of the user's email
/// when their tokens carry one, so `email` may be given to find those too; the hash of the
/// user id, and those of the user's API keys, are always included.
pub async fn erase_user(
    services: Services<'_>,
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
    let mut user_hashes = vec![services.auth.user_hash(None, user_id)];
    if let Some(email) = email {
        user_hashes.push(services.auth.user_hash(Some(email), user_id));
    }
    let erasure = Erasure {
        user_id,
        confirm,
        user_hashes,
    };
    erase(services, admin, erasure).await
}

/// How long erasure waits for usage rows already recorded to be written, so that the purge
/// finds them.
const SETTLE: Duration = Duration::from_secs(5);

async fn erase(
    services: Services<'_>,
    by: &Principal,
    mut erasure: Erasure<'_>,
) -> Result<PurgeReport, UserDataError> {
    let Services {
        store,
        files,
        auth,
        chat,
    } = services;
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
    if !chat.settle_usage(SETTLE).await {
        tracing::warn!("usage rows still queued at erasure; late ones may outlive it");
    }
    let (report, file_keys) = store.purge_owner(owner, &erasure.user_hashes).await?;
    // Files uploaded while the bytes above were deleted: their rows are gone now, so their
    // bytes must go too, or nothing would ever point at them again.
    if let Err(e) = files.delete_bytes(&file_keys).await {
        tracing::error!(error = %e, "file bytes of an erased user could not be deleted");
    }
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
