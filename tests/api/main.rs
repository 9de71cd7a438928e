//! The integration suite: one binary, the real router over real connections, a fresh
//! database per test, every storage test on both SQLite and Postgres.

mod helpers;

mod config;
mod conversations;
mod errors;
mod frame;
mod health;
mod openapi;
mod process;
mod store;
