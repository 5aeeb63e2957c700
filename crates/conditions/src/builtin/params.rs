//! Helpers for plugins: reading `params` with JSON Pointers in every error.

use segments_domain::{FieldError, Violations};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Deserialises `params` into `T`, reporting shape errors at their pointer.
/// Declare `T` with `#[serde(deny_unknown_fields)]` so typos are refused.
pub fn parse<T: DeserializeOwned>(params: &Value) -> Result<T, Violations> {
    serde_path_to_error::deserialize(params).map_err(|err| {
        let mut pointer = String::new();
        for segment in err.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => {
                    pointer.push('/');
                    pointer.push_str(&index.to_string());
                }
                serde_path_to_error::Segment::Map { key } => {
                    pointer.push('/');
                    pointer.push_str(&segments_domain::violation::pointer_token(key));
                }
                _ => {}
            }
        }
        let message = err.inner().to_string();
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            pointer.push('/');
            pointer.push_str(field);
        }
        let code = if message.starts_with("unknown field") {
            "unknown_field"
        } else if message.starts_with("missing field") {
            "required"
        } else if message.starts_with("unknown variant") {
            "unknown_operator"
        } else {
            "invalid"
        };
        Violations::one(FieldError::new(code, message).at(pointer))
    })
}

/// A violation at `pointer`.
pub fn fail(pointer: &str, code: &'static str, message: impl Into<String>) -> Violations {
    Violations::one(FieldError::new(code, message).at(pointer))
}

/// Requires a non-empty list of at most `max` items.
pub fn check_list_len(len: usize, pointer: &str, max: usize) -> Result<(), Violations> {
    if len == 0 || len > max {
        return Err(fail(
            pointer,
            "size",
            format!("give between 1 and {max} items, got {len}"),
        ));
    }
    Ok(())
}

/// Largest `days` a relative date accepts: a century.
pub const MAX_DAYS: u32 = 36_500;

pub fn check_days(days: u32, pointer: &str) -> Result<(), Violations> {
    if days > MAX_DAYS {
        return Err(fail(
            pointer,
            "out_of_range",
            format!("at most {MAX_DAYS} days"),
        ));
    }
    Ok(())
}
