//! Who is calling: the authenticated principal and their role.

use serde::{Deserialize, Serialize};

/// Roles, least to most powerful: `viewer` reads, `user` also chats, `admin` also manages others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    User,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "viewer" => Self::Viewer,
            "user" => Self::User,
            "admin" => Self::Admin,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::User => "user",
            Self::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Jwt,
    ApiKey,
}

/// The caller, as authentication established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable user id (the token's subject); owns conversations and files.
    pub user_id: String,
    pub email: Option<String>,
    /// The highest role the caller holds.
    pub role: Role,
    pub method: AuthMethod,
    /// SHA-256 of the pepper and the lowercase email (or the user id when there is no
    /// email): what usage logs store instead of the email.
    pub user_hash: String,
}

impl Principal {
    pub fn has_role(&self, needed: Role) -> bool {
        self.role >= needed
    }
}

/// The hash a user's usage is filed under: SHA-256(pepper ‖ lowercase email), or of
/// (pepper ‖ "sub:" ‖ user id) when there is no email. Never the email itself.
pub fn user_hash(pepper: &str, email: Option<&str>, user_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(pepper.as_bytes());
    match email {
        Some(email) => h.update(email.to_ascii_lowercase().as_bytes()),
        None => {
            h.update(b"sub:");
            h.update(user_id.as_bytes());
        }
    }
    hex::encode(h.finalize())
}
