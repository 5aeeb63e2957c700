//! Helpers for plugins: reading `params` with JSON Pointers in every error.

use segments_domain::{FieldError, Violations};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Deserialises `params` into `T`, reporting shape errors at their pointer.
/// Declare `T` with `#[serde(deny_unknown_fields)]` so typos are refused.
///
/// A number written with a zero fraction (`70.0`) is an integer, as JSON
/// Schema says: it is read as one where an integer is expected.
pub fn parse<T: DeserializeOwned>(params: &Value) -> Result<T, Violations> {
    let first = serde_path_to_error::deserialize(params);
    let result = match first {
        Err(_) => {
            let mut normalised = params.clone();
            if segments_domain::json::integral_floats_as_integers(&mut normalised) {
                serde_path_to_error::deserialize(&normalised)
            } else {
                first
            }
        }
        ok => ok,
    };
    result.map_err(|err| {
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
        // `#[serde(default)]` (which keeps a field with a custom schema
        // optional) adds `"default": null`, a value such a schema may not
        // even allow: absent says the same.
        if let Some(Value::Object(properties)) = object.get_mut("properties") {
            for property in properties.values_mut().filter_map(Value::as_object_mut) {
                if property.get("default") == Some(&Value::Null) {
                    property.remove("default");
                }
            }
        }
    }
    schema
}

/// What a parser does with a field its operator does not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherFields {
    /// Ignored (still bound-checked).
    Ignored,
    /// Refused: it must be absent or null.
    Refused,
}

/// Rewrites the object `schema` as a `oneOf` of one branch per `(title,
/// operators, fields)` rule, saying which fields each operator reads as
/// the parser requires them: in a branch `op` is one of `operators`, every
/// one of `fields` is given (not null) and — if `others` is
/// [`OtherFields::Refused`] — the rest of the rules' fields are absent or
/// null. The branches are disjoint by `op`. So a client (and a fuzzer)
/// knows before sending that `between` needs `from` and `to`, and a
/// generated SDK types each operator's shape (named by `title`).
pub fn with_fields_by_op(
    schema: Value,
    fields_by_op: &[(&str, &[&str], &[&str])],
    others: OtherFields,
) -> Value {
    let mut all: Vec<&str> = fields_by_op
        .iter()
        .flat_map(|(_, _, fields)| fields.iter().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    let Some(base) = schema.as_object() else {
        return schema;
    };
    let base_required: Vec<Value> = base
        .get("required")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let branches: Vec<Value> = fields_by_op
        .iter()
        .map(|(title, ops, fields)| {
            // Each branch is the whole object, so that a generator reading
            // only the branches (as some do) still sees every field.
            let mut branch = base.clone();
            branch.remove("description");
            branch.insert("title".into(), Value::from(*title));
            let mut required = base_required.clone();
            if let Some(Value::Object(properties)) = branch.get_mut("properties") {
                if let Some(op) = properties.get_mut("op") {
                    op["enum"] = serde_json::json!(ops);
                }
                for field in &all {
                    if fields.contains(field) {
                        let narrowed = not_null(properties.get(*field).cloned());
                        properties.insert((*field).into(), narrowed);
                        required.push(Value::from(*field));
                    } else if others == OtherFields::Refused {
                        properties.insert((*field).into(), serde_json::json!({"type": "null"}));
                    }
                }
            }
            branch.insert("required".into(), Value::Array(required));
            Value::Object(branch)
        })
        .collect();
    let mut one_of = serde_json::Map::new();
    if let Some(description) = base.get("description") {
        one_of.insert("description".into(), description.clone());
    }
    one_of.insert("oneOf".into(), Value::Array(branches));
    Value::Object(one_of)
}

/// `schema` (a field's) without `null` among its types.
fn not_null(schema: Option<Value>) -> Value {
    let mut schema = schema.unwrap_or_else(|| serde_json::json!({}));
    if let Some(types) = schema.get_mut("type").and_then(Value::as_array_mut) {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types[0].clone();
            schema["type"] = only;
        }
    }
    // A description already sits on the field itself.
    if let Some(object) = schema.as_object_mut() {
        object.remove("description");
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
