//! Route handlers: extract, call one service function, map the result.

pub mod admin;
pub mod api_keys;
pub mod budgets;
pub mod chat;
pub mod conversations;
pub mod files;
pub mod health;
pub mod me;
pub mod metrics;
pub mod search;
pub mod stream;
pub mod usage;
