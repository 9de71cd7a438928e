//! An API key as stored: never the secret, only its SHA-256 and a short display prefix.

use time::OffsetDateTime;
use uuid::Uuid;

use super::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    /// The user id that owns the key; requests with it act as this user.
    pub owner: String,
    /// The owner's usage hash at creation, so key traffic is accounted to the same user.
    pub user_hash: String,
    pub name: String,
    /// The first characters of the key (`ck_` and 9 more), shown in lists and indexed.
    pub prefix: String,
    /// Hex SHA-256 of the whole key.
    pub hash: String,
    pub role: Role,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}
