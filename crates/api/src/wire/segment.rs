use chrono::{DateTime, Utc};
use segments_conditions::{Explanation, TypeInfo};
use segments_store::{SegmentRecord, SegmentRule};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::contact::Contact;
use crate::membership::Membership;

/// `static`: members are added and removed by hand. `dynamic`: members are
/// the contacts that satisfy `conditions`, always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SegmentKind {
    Static,
    Dynamic,
}

/// A condition tree node: a group (`{"all": [...]}`, `{"any": [...]}`,
/// `{"not": {...}}`) or a condition (`{"type": "tag", "params": {...}}`; see
/// `GET /v1/condition-types` for each type's parameters). At most 5 levels
/// and 100 conditions by default. Example:
/// `{"all": [{"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}},
/// {"type": "opt_in", "params": {"opted_in": true}}]}`
// Its schema here is a placeholder: which leaves a tree takes depends on the
// condition types registered at run time, so `openapi_conditions` writes
// the tree into the document from the registry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(value_type = Object, example = json!({"all": [
    {"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}},
    {"type": "opt_in", "params": {"opted_in": true}}
]}))]
pub struct ConditionTree(pub Value);

/// A new segment: `static` (members added and removed by hand) or
/// `dynamic` (the contacts that satisfy `conditions`), told apart by `kind`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", try_from = "SegmentFields")]
pub enum SegmentInput {
    #[schema(title = "StaticSegmentInput")]
    Static {
        #[schema(max_length = 200, example = "Newsletter")]
        name: String,
    },
    #[schema(title = "DynamicSegmentInput")]
    Dynamic {
        #[schema(max_length = 200, example = "VIPs on WhatsApp")]
        name: String,
        conditions: ConditionTree,
    },
}

/// What a `SegmentInput` body holds, read field by field so that a shape
/// error points at its field (a tagged enum read by serde would buffer the
/// body and lose the path); [`SegmentInput`] is the rule between them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentFields {
    name: String,
    kind: SegmentKind,
    conditions: Option<ConditionTree>,
}

impl TryFrom<SegmentFields> for SegmentInput {
    type Error = String;

    fn try_from(fields: SegmentFields) -> Result<Self, String> {
        // Worded as serde words it, so the extractor points at the field.
        match (fields.kind, fields.conditions) {
            (SegmentKind::Static, None) => Ok(Self::Static { name: fields.name }),
            (SegmentKind::Static, Some(_)) => {
                Err("unknown field `conditions`: a static segment has no conditions".into())
            }
            (SegmentKind::Dynamic, None) => {
                Err("missing field `conditions`: a dynamic segment needs conditions".into())
            }
            (SegmentKind::Dynamic, Some(conditions)) => Ok(Self::Dynamic {
                name: fields.name,
                conditions,
            }),
        }
    }
}

impl SegmentInput {
    pub fn name(&self) -> &str {
        match self {
            Self::Static { name } | Self::Dynamic { name, .. } => name,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentPatch {
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Replaces a dynamic segment's conditions.
    pub conditions: Option<ConditionTree>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Segment {
    pub id: i64,
    pub name: String,
    pub kind: SegmentKind,
    pub conditions: Option<ConditionTree>,
    /// How many contacts are members now (absent while the set is building).
    pub member_count: Option<u64>,
    /// Where the count comes from, and the materialized set's state.
    pub membership: Membership,
    /// Set when stored conditions no longer validate (e.g. an attribute they
    /// read was deleted); such a segment matches nobody until fixed.
    pub problem: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Segment {
    pub fn new(record: SegmentRecord, membership: Membership, problem: Option<String>) -> Self {
        let (kind, conditions) = match record.rule {
            SegmentRule::Static => (SegmentKind::Static, None),
            SegmentRule::Dynamic(tree) => (SegmentKind::Dynamic, Some(ConditionTree(tree))),
        };
        Self {
            id: record.id.0,
            name: record.name,
            kind,
            conditions,
            member_count: membership.count,
            membership,
            problem,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentPage {
    pub items: Vec<Segment>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewInput {
    pub conditions: ConditionTree,
    /// How many matching contacts to return, 0-100 (default 20).
    #[schema(minimum = 0, maximum = 100)]
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewResult {
    /// How many contacts match.
    pub count: u64,
    /// The first matching contacts, by id.
    pub contacts: Vec<Contact>,
}

/// Contacts to add to, or remove from, a static segment: by id, by name, or
/// both. Empty (or absent) lists change nothing, as everywhere in the API.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersInput {
    /// At most 10,000 ids.
    pub contact_ids: Option<Vec<i64>>,
    /// Exact contact names; each must name exactly one contact (at most 1,000).
    pub names: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MembersResult {
    /// Contacts added (or removed) by this call.
    pub changed: u64,
    /// Ids that name no contact of this workspace.
    pub not_found: Vec<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExplainParams {
    /// The contact to explain.
    pub contact_id: i64,
}

/// A condition tree node with its truth for one contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExplainedNode {
    /// `all`, `any`, `not` or `condition`.
    pub node: String,
    pub r#type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
    pub result: bool,
    #[schema(no_recursion)]
    pub children: Vec<ExplainedNode>,
}

impl From<Explanation> for ExplainedNode {
    fn from(e: Explanation) -> Self {
        Self {
            node: e.node.to_owned(),
            r#type: e.r#type,
            params: e.params,
            result: e.result,
            children: e.children.into_iter().map(Self::from).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExplainResult {
    pub segment_id: i64,
    pub contact_id: i64,
    pub member: bool,
    /// Why: the tree with each node's truth (dynamic segments), or absent
    /// for static ones, whose members are added by hand.
    pub tree: Option<ExplainedNode>,
}

/// A Customers-page search: a tree, a segment, or both (combined with AND).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchInput {
    pub conditions: Option<ConditionTree>,
    pub segment_id: Option<i64>,
    /// Page size, 1-1000 (default 50).
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConditionType {
    /// The `type` of a condition node.
    pub name: String,
    pub description: String,
    /// Values of `params.op`, when the type has operators.
    pub operators: Vec<String>,
    /// JSON Schema of `params`.
    #[schema(value_type = Object)]
    pub params_schema: Value,
}

impl From<TypeInfo> for ConditionType {
    fn from(t: TypeInfo) -> Self {
        Self {
            name: t.name.to_owned(),
            description: t.description.to_owned(),
            operators: t.operators,
            params_schema: t.params_schema,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConditionTypeList {
    pub items: Vec<ConditionType>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildAccepted {
    pub segment_id: i64,
    /// `queued`: a worker will rebuild the set.
    pub status: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotInput {
    /// How long the snapshot lives, 60 s to 30 days (default one day).
    #[schema(minimum = 60, maximum = 2592000)]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotCreated {
    /// The Redis set holding the frozen members (SSCAN it).
    pub key: String,
    pub count: u64,
    pub expires_in_seconds: u64,
}

/// A segment a contact belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactSegment {
    pub id: i64,
    pub name: String,
    pub kind: SegmentKind,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactSegments {
    pub items: Vec<ContactSegment>,
}
