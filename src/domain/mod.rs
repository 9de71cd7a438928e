//! Plain domain types shared by every layer: ids, principals, conversations, messages, usage. No I/O.

pub mod api_key;
pub mod conversation;
pub mod file;
pub mod ids;
pub mod message;
pub mod principal;
pub mod usage;

pub use api_key::ApiKey;
pub use conversation::Conversation;
pub use file::StoredFile;
pub use ids::new_id;
pub use message::{Message, MessageRole, MessageStatus, NewMessage};
pub use principal::{AuthMethod, Principal, Role};
pub use usage::UsageRecord;
