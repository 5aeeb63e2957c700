//! The HTTP API, end to end, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_keys;
mod attributes;
mod bad_input;
mod bulk;
mod contacts;
mod fairness;
mod health;
mod hostile;
mod isolation;
mod operations;
mod pagination;
mod plugins;
mod segments;
mod tags;
mod transactions;
