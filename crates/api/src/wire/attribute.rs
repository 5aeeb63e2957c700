use chrono::{DateTime, Utc};
use segments_domain::AttributeType;
use segments_store::AttributeDefinition;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The type every value of an attribute must have.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttributeKind {
    Text,
    Number,
    Boolean,
    Date,
}

impl From<AttributeKind> for AttributeType {
    fn from(k: AttributeKind) -> Self {
        match k {
            AttributeKind::Text => Self::Text,
            AttributeKind::Number => Self::Number,
            AttributeKind::Boolean => Self::Boolean,
            AttributeKind::Date => Self::Date,
        }
    }
}

impl From<AttributeType> for AttributeKind {
    fn from(t: AttributeType) -> Self {
        match t {
            AttributeType::Text => Self::Text,
            AttributeType::Number => Self::Number,
            AttributeType::Boolean => Self::Boolean,
            AttributeType::Date => Self::Date,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeInput {
    /// `[a-z][a-z0-9_]*`, at most 64 characters.
    #[schema(example = "plan", pattern = "^[a-z][a-z0-9_]*$", max_length = 64)]
    pub key: String,
    pub r#type: AttributeKind,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Attribute {
    pub id: i64,
    pub key: String,
    pub r#type: AttributeKind,
    pub created_at: DateTime<Utc>,
}

impl From<AttributeDefinition> for Attribute {
    fn from(d: AttributeDefinition) -> Self {
        Self {
            id: d.id.0,
            key: d.key,
            r#type: d.r#type.into(),
            created_at: d.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttributeList {
    pub items: Vec<Attribute>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeValueInput {
    pub value: AttributeScalar,
}

/// A value of a custom attribute: a string (text, or a date as an RFC 3339
/// date-time or `YYYY-MM-DD`), a number or a boolean, as the attribute's
/// type says.
// Any of the three is read here; whether it fits the attribute's type is
// the domain's check (`AttributeType::parse_value`), which knows the type
// and says what it expected.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum AttributeScalar {
    Text(String),
    #[schema(value_type = f64)]
    Number(serde_json::Number),
    Boolean(bool),
}

impl AttributeScalar {
    /// The value as the store reads it.
    pub fn into_json(self) -> serde_json::Value {
        match self {
            Self::Text(s) => serde_json::Value::String(s),
            Self::Number(n) => serde_json::Value::Number(n),
            Self::Boolean(b) => serde_json::Value::Bool(b),
        }
    }

    /// A stored value as sent (dates as RFC 3339 text); `None` for what no
    /// attribute can hold.
    pub fn from_json(value: serde_json::Value) -> Option<Self> {
        match value {
            serde_json::Value::String(s) => Some(Self::Text(s)),
            serde_json::Value::Number(n) => Some(Self::Number(n)),
            serde_json::Value::Bool(b) => Some(Self::Boolean(b)),
            _ => None,
        }
    }
}

/// A new value for an attribute, or `null` to unset it.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct AttributeChange(pub Option<AttributeScalar>);

impl<'de> Deserialize<'de> for AttributeScalar {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let kind = match &value {
            // Only a single value can be null here: an attribute map's
            // nulls (unset) never reach this type.
            serde_json::Value::Null => "null (use DELETE to unset a value)",
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::Object(_) => "an object",
            _ => "",
        };
        Self::from_json(value).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a string, a number or a boolean, got {kind}"
            ))
        })
    }
}
