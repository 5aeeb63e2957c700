//! The Segments service as a library: its configuration and the one
//! `Application` that `segments serve` and the end-to-end tests start.

pub mod app;
pub mod config;

pub use app::{AppError, Application};
pub use config::Settings;
