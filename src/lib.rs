//! Colloquy: a self-hosted chat API server for LLM specialists.
//!
//! Module map, top to bottom (data flows down and back up; nothing lower knows a higher one):
//! - `cli`, `server`: the command line and serving (start-up, graceful shutdown).
//! - `config`: settings from files and the environment; the only reader of the environment.
//! - `telemetry`: the tracing subscriber.
//! - `http`: routes, layers, extractors; the only module that knows axum (with `error`).
//! - `error`: `ApiError`, the one place an error becomes an HTTP status and envelope.
//! - `state`: `AppState`, the services handlers reach.
//! - `chat`, `conversations`, `api_keys`, `files`, `readiness`: services.
//! - `auth`: credential verification, no HTTP.
//! - `ratelimit`: token buckets in memory or Redis, no HTTP.
//! - `providers`: LLM backends behind one trait, and the registry that routes, retries and prices.
//! - `store`: persistence over Postgres and SQLite; the only module that knows sqlx.
//! - `tasks`: background tasks and their shutdown.
//! - `domain`: plain types.

// Outside tests a panic would be a 500 or a crash: errors are returned instead.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api_keys;
pub mod auth;
pub mod budgets;
pub mod chat;
pub mod cli;
pub mod config;
pub mod conversations;
pub mod domain;
pub mod error;
pub mod files;
pub mod http;
pub mod prometheus;
pub mod providers;
pub mod ratelimit;
pub mod readiness;
pub mod redis_link;
pub mod retention;
pub mod server;
pub mod state;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod tls;
pub mod usage;
pub mod user_data;

pub use http::build_app;
