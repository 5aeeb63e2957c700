//! The plugin API: what a condition type provides, and the contexts it is
//! given to validate, evaluate and compile itself.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use sea_query::Expr;
use segments_domain::{AttributeId, AttributeType, SegmentId, Timestamp, Violations, WorkspaceId};
use serde_json::Value;

use crate::{ContactSnapshot, SegmentSet};

/// A kind of condition, such as `tag` or `attribute`.
///
/// Implementations are registered in a [`crate::Registry`] at start-up.
pub trait ConditionType: Send + Sync + 'static {
    /// The `type` of the leaves this plugin handles: a lowercase identifier.
    fn name(&self) -> &'static str;

    /// One sentence for UIs.
    fn description(&self) -> &'static str;

    /// A JSON Schema (draft 2020-12) of `params`, for filter builders, the
    /// OpenAPI document and the SDKs generated from it. Derive it from the
    /// type [`ConditionType::parse`] deserialises `params` into, with
    /// [`crate::builtin::params::schema_of`], so that the two cannot drift.
    /// The values of `properties.op.enum` (or of each `oneOf` branch's,
    /// see [`crate::builtin::params::with_fields_by_op`]), if any, are listed
    /// as the type's operators.
    fn params_schema(&self) -> Value;

    /// Validates `params` into a condition. Violations point into `params`
    /// (the engine prefixes the leaf's location).
    fn parse(
        &self,
        params: &Value,
        ctx: &ParseContext<'_>,
    ) -> Result<Arc<dyn Condition>, Violations>;
}

/// A validated condition: one leaf of a tree.
///
/// Its meanings must agree for every contact: [`Condition::matches`] is true
/// exactly when the row satisfies [`Condition::to_sql`], on both backends. The
/// SQL must never evaluate to NULL (use `col IS NOT NULL AND …`), or `not`
/// would drop rows that memory keeps.
pub trait Condition: Send + Sync + fmt::Debug {
    /// The in-memory meaning, for one contact.
    fn matches(&self, contact: &ContactSnapshot, ctx: &EvalContext<'_>) -> bool;

    /// The SQL meaning: a boolean expression over the row `contacts` (see
    /// [`crate::sql`] for the tables a condition may read).
    fn to_sql(&self, ctx: &SqlContext<'_>) -> Result<Expr, SqlError>;

    /// The contact data this condition reads: a change to anything else can
    /// never change its truth.
    fn reads(&self) -> Vec<DataRef>;

    /// Whether the passing of time alone can change its truth (relative dates).
    fn time_dependent(&self) -> bool {
        false
    }

    /// For a time-dependent condition: SQL over the row `contacts` that
    /// holds for every contact whose truth at `to` may differ from its
    /// truth at `from` (`from <= to`) with its data unchanged. It may hold
    /// for more contacts, never for fewer. `None` (the default) when the
    /// condition cannot narrow it down: its segments are then rebuilt whole
    /// as time passes, instead of re-deciding only those contacts.
    fn time_window_sql(
        &self,
        _from: Timestamp,
        _to: Timestamp,
        _ctx: &SqlContext<'_>,
    ) -> Option<Expr> {
        None
    }
}

/// A piece of contact data a condition may read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataRef {
    /// Every tag of the contact (a condition on its whole tag set).
    Tags,
    /// One tag, by its case-folded key.
    Tag(String),
    Attribute(String),
    Channel,
    OptIn,
    FirstContacted,
    /// A plain contact column: `name`, `phone`, `email` or `external_id`.
    Field(&'static str),
    /// Membership of another segment.
    Segment(SegmentId),
}

impl DataRef {
    /// The key under which writes record that they touched this data (see
    /// the store's change log); [`ALL_CHANGES`] stands for everything.
    pub fn change_key(&self) -> String {
        match self {
            DataRef::Tags => "tags".into(),
            DataRef::Tag(key) => format!("tag:{key}"),
            DataRef::Attribute(key) => format!("attribute:{key}"),
            DataRef::Channel => "channel".into(),
            DataRef::OptIn => "opt_in".into(),
            DataRef::FirstContacted => "first_contacted".into(),
            DataRef::Field(field) => format!("field:{field}"),
            DataRef::Segment(id) => format!("segment:{id}"),
        }
    }
}

/// The change key of a write that may have changed anything (creation,
/// deletion, or a change whose details were lost).
pub const ALL_CHANGES: &str = "*";

/// What validation may consult: the workspace's attribute definitions and
/// segments.
#[derive(Debug, Clone, Copy)]
pub struct ParseContext<'a> {
    pub attributes: &'a HashMap<String, (AttributeId, AttributeType)>,
    pub segments: &'a SegmentSet,
    /// The segment being saved, when it already exists (to refuse self-references).
    pub current_segment: Option<SegmentId>,
}

/// The SQL dialect a condition compiles for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What in-memory evaluation may consult.
#[derive(Clone, Copy)]
pub struct EvalContext<'a> {
    /// The instant relative dates are measured from; SQL of the same
    /// evaluation binds the same instant.
    pub now: Timestamp,
    pub segments: &'a dyn SegmentEvaluator,
    /// How many segment references deep this evaluation is.
    pub depth: usize,
}

impl fmt::Debug for EvalContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvalContext")
            .field("now", &self.now)
            .field("depth", &self.depth)
            .finish()
    }
}

/// What SQL compilation may consult.
#[derive(Clone, Copy)]
pub struct SqlContext<'a> {
    pub backend: Backend,
    pub now: Timestamp,
    pub workspace_id: WorkspaceId,
    pub segments: &'a dyn SegmentSql,
    /// How many segment references deep this compilation is.
    pub depth: usize,
}

impl fmt::Debug for SqlContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlContext")
            .field("backend", &self.backend)
            .field("now", &self.now)
            .field("workspace_id", &self.workspace_id)
            .finish()
    }
}

/// Answers segment membership in memory.
pub trait SegmentEvaluator: Send + Sync {
    fn is_member(
        &self,
        segment: SegmentId,
        contact: &ContactSnapshot,
        ctx: &EvalContext<'_>,
    ) -> bool;
}

/// Answers segment membership in SQL.
pub trait SegmentSql: Send + Sync {
    fn membership_sql(&self, segment: SegmentId, ctx: &SqlContext<'_>) -> Result<Expr, SqlError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error("segment {0} does not exist")]
    MissingSegment(SegmentId),
    #[error("segment references nest deeper than {0}")]
    TooDeep(usize),
}
