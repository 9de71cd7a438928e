//! The integration suite: one binary, the real router over real connections, a fresh
//! database per test, every storage test on both SQLite and Postgres.

// Tests read TEST_DATABASE_URL and print skip notices; the src bans do not apply here.
#![allow(clippy::disallowed_methods, clippy::disallowed_macros)]

mod helpers;

mod auth;
mod budgets;
mod chat;
mod config;
mod conversations;
mod errors;
mod fakes;
mod files;
mod frame;
mod health;
mod metrics;
mod openai;
mod openapi;
mod process;
mod providers;
mod ratelimit;
mod resume;
mod retention;
mod search;
mod store;
mod titles;
mod usage;
mod user_data;
mod web;
