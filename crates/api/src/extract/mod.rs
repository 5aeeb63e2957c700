//! Request extractors that answer problem+json on failure.

pub mod auth;
pub mod json;
pub mod params;

pub use auth::Auth;
pub use json::{BodyLimit, BulkJson, Json};
