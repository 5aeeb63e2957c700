//! `segment`: member / not member of another segment of the workspace.
//! Referring to a missing segment, or to the segment being saved, is refused;
//! cycles through other segments are refused when a segment is saved.

use std::sync::Arc;

use schemars::JsonSchema;
use sea_query::{Expr, ExprTrait};
use segments_domain::{SegmentId, Violations};
use serde::Deserialize;
use serde_json::Value;

use super::params::{fail, parse, schema_of};
use crate::ContactSnapshot;
use crate::plugin::{
    Condition, ConditionType, DataRef, EvalContext, ParseContext, SqlContext, SqlError,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Op {
    MemberOf,
    NotMemberOf,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    op: Op,
    /// Another segment of the workspace.
    segment_id: i64,
}

/// The `segment` condition type.
#[derive(Debug, Clone, Copy)]
pub struct SegmentCondition;

#[derive(Debug)]
struct Compiled {
    member: bool,
    segment: SegmentId,
}

impl ConditionType for SegmentCondition {
    fn name(&self) -> &'static str {
        "segment"
    }

    fn description(&self) -> &'static str {
        "Contacts that are, or are not, members of another segment."
    }

    fn params_schema(&self) -> Value {
        schema_of::<Params>()
    }

    fn parse(
        &self,
        params: &Value,
        ctx: &ParseContext<'_>,
    ) -> Result<Arc<dyn Condition>, Violations> {
        let p: Params = parse(params)?;
        let segment = SegmentId(p.segment_id);
        if ctx.current_segment == Some(segment) {
            return Err(fail(
                "/segment_id",
                "self_reference",
                "a segment cannot refer to itself",
            ));
        }
        if !ctx.segments.contains(segment) {
            return Err(fail(
                "/segment_id",
                "unknown_segment",
                format!("segment {segment} does not exist"),
            ));
        }
        Ok(Arc::new(Compiled {
            member: p.op == Op::MemberOf,
            segment,
        }))
    }
}

impl Condition for Compiled {
    fn matches(&self, c: &ContactSnapshot, ctx: &EvalContext<'_>) -> bool {
        ctx.segments.is_member(self.segment, c, ctx) == self.member
    }

    fn to_sql(&self, ctx: &SqlContext<'_>) -> Result<Expr, SqlError> {
        let membership = ctx.segments.membership_sql(self.segment, ctx)?;
        Ok(if self.member {
            membership
        } else {
            membership.not()
        })
    }

    fn reads(&self) -> Vec<DataRef> {
        vec![DataRef::Segment(self.segment)]
    }
}
