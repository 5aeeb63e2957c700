//! Handlers, one module per resource.

pub mod api_keys;
pub mod attributes;
pub mod contact_segments;
pub mod contact_tags;
pub mod contacts;
pub mod health;
pub mod search;
pub mod segments;
pub mod tags;
