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

/// The JSON Schema (draft 2020-12, self-contained) of `T`: what
/// [`crate::ConditionType::params_schema`] returns when `T` is the type
/// [`parse`] reads `params` into, so that the published schema and the
/// parser are one declaration. Serde's attributes (`rename`,
/// `deny_unknown_fields`) shape both; bounds go in `#[schemars(…)]`
/// attributes naming the constants the parser checks.
pub fn schema_of<T: schemars::JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| {
            // Embedded in a larger document (the OpenAPI spec, the
            // condition-type list), a schema must not point into `$defs`
            // of its own root.
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(object) = schema.as_object_mut() {
        // The Rust type's name says nothing to a client.
        object.remove("title");
    }
    schema
}

/// The schema of a field that takes a string, a number or a boolean (a
/// value compared with a typed attribute), for `#[schemars(schema_with)]`.
pub fn scalar_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": ["string", "number", "boolean"]})
}

/// The schema of a field that takes a string or a number (a bound of a
/// range over numbers or dates), for `#[schemars(schema_with)]`.
pub fn bound_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": ["string", "number"]})
}
