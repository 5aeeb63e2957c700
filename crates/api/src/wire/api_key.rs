use chrono::{DateTime, Utc};
use segments_store::{ApiKeyRecord, IssuedKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyInput {
    /// A label to recognise the key by, e.g. the integration using it.
    #[schema(example = "campaign sender", max_length = 100)]
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyRecord> for ApiKey {
    fn from(r: ApiKeyRecord) -> Self {
        Self {
            id: r.id.0,
            name: r.name,
            prefix: r.prefix,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKey>,
}

/// A new key. `key` is shown this once; only its hash is stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedApiKey {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    /// The secret, to send as `Authorization: Bearer <key>`.
    pub key: String,
}

impl From<IssuedKey> for IssuedApiKey {
    fn from(k: IssuedKey) -> Self {
        Self {
            id: k.record.id.0,
            name: k.record.name,
            prefix: k.record.prefix,
            created_at: k.record.created_at,
            key: k.secret,
        }
    }
}
