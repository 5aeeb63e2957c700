//! Custom attributes: a workspace declares a key with a type; contacts hold
//! values of that type.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_ATTRIBUTE_KEY_CHARS, MAX_TEXT_VALUE_CHARS};
use crate::time::Timestamp;
use crate::violation::FieldError;

/// An attribute key: `[a-z][a-z0-9_]*`, at most 64 characters. Keys are
/// identifiers (they appear in condition trees and JSON paths), so they are
/// restricted to a form that never needs quoting or case folding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributeKey(String);

/// A regular expression for what [`AttributeKey::parse`] accepts (besides
/// its length), for schemas.
pub const ATTRIBUTE_KEY_PATTERN: &str = "^[a-z][a-z0-9_]*$";

impl AttributeKey {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let len = raw.chars().count();
        if len == 0 {
            return Err(FieldError::new("empty", "must not be empty"));
        }
        if len > MAX_ATTRIBUTE_KEY_CHARS {
            return Err(FieldError::new(
                "too_long",
                format!("is {len} characters long; at most {MAX_ATTRIBUTE_KEY_CHARS} are allowed"),
            ));
        }
        let mut chars = raw.chars();
        let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !(starts_with_letter && rest_ok) {
            return Err(FieldError::new(
                "invalid_key",
                "must start with a lowercase letter and hold only a-z, 0-9 and _",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AttributeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The declared type of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeType {
    Text,
    Number,
    Boolean,
    Date,
}

impl AttributeType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Date => "date",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        match raw {
            "text" => Ok(Self::Text),
            "number" => Ok(Self::Number),
            "boolean" => Ok(Self::Boolean),
            "date" => Ok(Self::Date),
            other => Err(FieldError::new(
                "unknown_type",
                format!("unknown attribute type `{other}`; expected text, number, boolean or date"),
            )),
        }
    }

    /// Reads a JSON value as a value of this type. Numbers must be JSON
    /// numbers and booleans JSON booleans: no coercion from strings, so that
    /// a client's type confusion is reported rather than guessed at.
    pub fn parse_value(self, raw: &serde_json::Value) -> Result<AttributeValue, FieldError> {
        use serde_json::Value as J;
        let mismatch = || {
            FieldError::new(
                "type_mismatch",
                format!("expected a {} value, got {}", self.as_str(), json_kind(raw)),
            )
        };
        match (self, raw) {
            (Self::Text, J::String(s)) => {
                crate::text::storable(s)?;
                let len = s.chars().count();
                if len > MAX_TEXT_VALUE_CHARS {
                    return Err(FieldError::new(
                        "too_long",
                        format!(
                            "is {len} characters long; at most {MAX_TEXT_VALUE_CHARS} are allowed"
                        ),
                    ));
                }
                Ok(AttributeValue::Text(s.clone()))
            }
            (Self::Number, J::Number(n)) => n
                .as_f64()
                .filter(|f| f.is_finite())
                .map(AttributeValue::Number)
                .ok_or_else(|| FieldError::new("out_of_range", "number is not a finite double")),
            (Self::Boolean, J::Bool(b)) => Ok(AttributeValue::Boolean(*b)),
            (Self::Date, J::String(s)) => Timestamp::parse_str(s).map(AttributeValue::Date),
            _ => Err(mismatch()),
        }
    }
}

/// Integral values print as integers (`31`, not `31.0`): clients sent them
/// that way, and typed SDKs would otherwise see a float where they sent an int.
fn number_to_json(n: f64) -> serde_json::Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact
    if n.fract() == 0.0 && n.abs() < EXACT {
        serde_json::Value::Number(serde_json::Number::from(n as i64))
    } else {
        serde_json::Number::from_f64(n)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null)
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A typed attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    Text(String),
    Number(f64),
    Boolean(bool),
    Date(Timestamp),
}

impl AttributeValue {
    pub fn kind(&self) -> AttributeType {
        match self {
            Self::Text(_) => AttributeType::Text,
            Self::Number(_) => AttributeType::Number,
            Self::Boolean(_) => AttributeType::Boolean,
            Self::Date(_) => AttributeType::Date,
        }
    }

    /// The value as JSON, the inverse of [`AttributeType::parse_value`].
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Text(s) => serde_json::Value::String(s.clone()),
            Self::Number(n) => number_to_json(*n),
            Self::Boolean(b) => serde_json::Value::Bool(*b),
            Self::Date(t) => serde_json::Value::String(
                t.get().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn keys_are_lowercase_identifiers() {
        assert!(AttributeKey::parse("plan_tier2").is_ok());
        for bad in ["", "Plan", "2plan", "plan-tier", "plän"] {
            assert!(AttributeKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strings_are_not_coerced_to_numbers_or_booleans() {
        assert_eq!(
            AttributeType::Number
                .parse_value(&json!("42"))
                .map_err(|e| e.code),
            Err("type_mismatch")
        );
        assert_eq!(
            AttributeType::Boolean
                .parse_value(&json!("true"))
                .map_err(|e| e.code),
            Err("type_mismatch")
        );
    }

    #[test]
    fn dates_accept_instants_and_calendar_days() {
        assert!(
            AttributeType::Date
                .parse_value(&json!("2024-01-31"))
                .is_ok()
        );
        assert!(
            AttributeType::Date
                .parse_value(&json!("2024-01-31T12:00:00Z"))
                .is_ok()
        );
        assert!(
            AttributeType::Date
                .parse_value(&json!("31/01/2024"))
                .is_err()
        );
    }

    proptest! {
        #[test]
        fn every_accepted_value_round_trips_through_json(
            n in proptest::num::f64::NORMAL | proptest::num::f64::ZERO,
            s in ".{0,40}",
            b in any::<bool>(),
            secs in 0i64..200_000_000_000,
        ) {
            let date = chrono::DateTime::from_timestamp(secs - 30_000_000_000, 0)
                .map(|d| d.to_rfc3339());
            let cases = [
                (AttributeType::Number, json!(n)),
                (AttributeType::Text, json!(s)),
                (AttributeType::Boolean, json!(b)),
                (AttributeType::Date, json!(date)),
            ];
            for (ty, raw) in cases {
                if let Ok(value) = ty.parse_value(&raw) {
                    prop_assert_eq!(ty.parse_value(&value.to_json()), Ok(value));
                }
            }
        }
    }
}
