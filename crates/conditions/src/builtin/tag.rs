//! `tag`: has any of / has all of / has none of a list of tags.
//!
//! Names compare case-insensitively. A name no tag carries yet is allowed and
//! matches nobody until some contact gets that tag (so a segment can be
//! prepared before a campaign starts tagging).

use std::collections::BTreeSet;
use std::sync::Arc;

use schemars::JsonSchema;
use sea_query::{Expr, ExprTrait, Query};
use segments_domain::limits::{MAX_TAG_CHARS, MAX_TAGS_PER_REQUEST};
use segments_domain::text::{VISIBLE_TEXT_PATTERN, tag_key};
use segments_domain::{TagName, Violations};
use serde::Deserialize;
use serde_json::Value;

use super::params::{check_list_len, fail, parse, schema_of};
use crate::ContactSnapshot;
use crate::plugin::{
    Condition, ConditionType, DataRef, EvalContext, ParseContext, SqlContext, SqlError,
};
use crate::sql::{ContactTags, Contacts, Tags};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
enum Op {
    #[serde(rename = "has_any")]
    Any,
    #[serde(rename = "has_all")]
    All,
    #[serde(rename = "has_none")]
    None,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    op: Op,
    /// Tag names, compared case-insensitively.
    #[schemars(
        length(min = 1, max = MAX_TAGS_PER_REQUEST),
        inner(length(min = 1, max = MAX_TAG_CHARS), pattern(VISIBLE_TEXT_PATTERN))
    )]
    tags: Vec<String>,
}

/// The `tag` condition type.
#[derive(Debug, Clone, Copy)]
pub struct TagCondition;

#[derive(Debug)]
struct Compiled {
    op: Op,
    /// Case-folded names.
    keys: BTreeSet<String>,
}

impl ConditionType for TagCondition {
    fn name(&self) -> &'static str {
        "tag"
    }

    fn description(&self) -> &'static str {
        "Contacts that have any, all or none of the given tags (case-insensitive)."
    }

    fn params_schema(&self) -> Value {
        schema_of::<Params>()
    }

    fn parse(
        &self,
        params: &Value,
        _: &ParseContext<'_>,
    ) -> Result<Arc<dyn Condition>, Violations> {
        let p: Params = parse(params)?;
        check_list_len(p.tags.len(), "/tags", MAX_TAGS_PER_REQUEST)?;
        let mut keys = BTreeSet::new();
        for (i, raw) in p.tags.iter().enumerate() {
            let name =
                TagName::parse(raw).map_err(|e| fail(&format!("/tags/{i}"), e.code, e.message))?;
            keys.insert(name.key());
        }
        Ok(Arc::new(Compiled { op: p.op, keys }))
    }
}

impl Compiled {
    /// `EXISTS` a link from the contact to a tag whose key is in `keys`.
    fn has_one_of<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a String>,
        ctx: &SqlContext<'_>,
    ) -> Expr {
        let tag_ids = Query::select()
            .column((Tags::Table, Tags::Id))
            .from(Tags::Table)
            .and_where(Expr::col((Tags::Table, Tags::WorkspaceId)).eq(ctx.workspace_id.0))
            .and_where(Expr::col((Tags::Table, Tags::NameKey)).is_in(keys.into_iter().cloned()))
            .to_owned();
        Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(ContactTags::Table)
                .and_where(
                    Expr::col((ContactTags::Table, ContactTags::ContactId))
                        .equals((Contacts::Table, Contacts::Id)),
                )
                .and_where(Expr::col((ContactTags::Table, ContactTags::TagId)).in_subquery(tag_ids))
                .to_owned(),
        )
    }
}

impl Condition for Compiled {
    fn matches(&self, contact: &ContactSnapshot, _: &EvalContext<'_>) -> bool {
        let has: BTreeSet<String> = contact.contact.tags.iter().map(|t| tag_key(t)).collect();
        match self.op {
            Op::Any => self.keys.iter().any(|k| has.contains(k)),
            Op::All => self.keys.iter().all(|k| has.contains(k)),
            Op::None => !self.keys.iter().any(|k| has.contains(k)),
        }
    }

    fn to_sql(&self, ctx: &SqlContext<'_>) -> Result<Expr, SqlError> {
        Ok(match self.op {
            Op::Any => self.has_one_of(&self.keys, ctx),
            Op::None => self.has_one_of(&self.keys, ctx).not(),
            Op::All => {
                let mut parts = self.keys.iter().map(|k| self.has_one_of([k], ctx));
                let first = parts.next().unwrap_or_else(|| Expr::val(true));
                parts.fold(first, |acc, p| acc.and(p))
            }
        })
    }

    fn reads(&self) -> Vec<DataRef> {
        self.keys.iter().map(|k| DataRef::Tag(k.clone())).collect()
    }
}
