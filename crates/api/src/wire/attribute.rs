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
    /// A value of the attribute's type: a string (text), a number, a boolean,
    /// or an RFC 3339 date-time / `YYYY-MM-DD` date.
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
}
