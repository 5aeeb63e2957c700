//! `first_contacted`: when the contact was first contacted — between two
//! instants, within the last N days, or more than N days ago. A contact never
//! contacted matches none of them.

use std::sync::Arc;

use schemars::JsonSchema;
use sea_query::{Expr, ExprTrait};
use segments_domain::time::INSTANT_PATTERN;
use segments_domain::{Timestamp, Violations};
use serde::Deserialize;
use serde_json::Value;

use super::dates::DatePredicate;
use super::params::{MAX_DAYS, OtherFields, check_days, fail, parse, schema_of, with_fields_by_op};
use crate::ContactSnapshot;
use crate::plugin::{
    Condition, ConditionType, DataRef, EvalContext, ParseContext, SqlContext, SqlError,
};
use crate::sql::{Contacts, contact};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Op {
    Between,
    WithinLastDays,
    MoreThanDaysAgo,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    op: Op,
    /// `between`: the first instant (inclusive).
    #[schemars(extend("format" = "date-time", "pattern" = INSTANT_PATTERN))]
    from: Option<String>,
    /// `between`: the last instant (inclusive).
    #[schemars(extend("format" = "date-time", "pattern" = INSTANT_PATTERN))]
    to: Option<String>,
    /// `within_last_days`, `more_than_days_ago`.
    #[schemars(range(max = MAX_DAYS))]
    days: Option<u32>,
}

/// The `first_contacted` condition type.
#[derive(Debug, Clone, Copy)]
pub struct FirstContactedCondition;

#[derive(Debug)]
struct Compiled(DatePredicate);

fn instant(raw: Option<&str>, pointer: &str) -> Result<Timestamp, Violations> {
    let raw = raw.ok_or_else(|| fail(pointer, "required", "required by this operator"))?;
    Timestamp::parse_str(raw).map_err(|e| fail(pointer, e.code, e.message))
}

/// Parses the `days` of a relative operator.
pub(super) fn days(raw: Option<u32>, pointer: &str) -> Result<u32, Violations> {
    let d = raw.ok_or_else(|| fail(pointer, "required", "required by this operator"))?;
    check_days(d, pointer)?;
    Ok(d)
}

impl ConditionType for FirstContactedCondition {
    fn name(&self) -> &'static str {
        "first_contacted"
    }

    fn description(&self) -> &'static str {
        "Contacts first contacted between two instants (inclusive), within the last N days, or more than N days ago."
    }

    fn params_schema(&self) -> Value {
        with_fields_by_op(
            schema_of::<Params>(),
            &[
                ("FirstContactedBetween", &["between"], &["from", "to"]),
                (
                    "FirstContactedRelative",
                    &["within_last_days", "more_than_days_ago"],
                    &["days"],
                ),
            ],
            OtherFields::Ignored,
        )
    }

    fn parse(
        &self,
        params: &Value,
        _: &ParseContext<'_>,
    ) -> Result<Arc<dyn Condition>, Violations> {
        let p: Params = parse(params)?;
        // A field the operator does not read is ignored, but never out of
        // the bounds its schema states: what the schema refuses, the
        // parser refuses.
        if let Some(d) = p.days {
            check_days(d, "/days")?;
        }
        for (field, pointer) in [(&p.from, "/from"), (&p.to, "/to")] {
            if field.is_some() {
                instant(field.as_deref(), pointer)?;
            }
        }
        let predicate = match p.op {
            Op::Between => {
                let from = instant(p.from.as_deref(), "/from")?;
                let to = instant(p.to.as_deref(), "/to")?;
                if from > to {
                    return Err(fail("/to", "empty_range", "`to` is before `from`"));
                }
                DatePredicate::Between(from, to)
            }
            Op::WithinLastDays => DatePredicate::WithinLastDays(days(p.days, "/days")?),
            Op::MoreThanDaysAgo => DatePredicate::MoreThanDaysAgo(days(p.days, "/days")?),
        };
        Ok(Arc::new(Compiled(predicate)))
    }
}

impl Condition for Compiled {
    fn matches(&self, c: &ContactSnapshot, ctx: &EvalContext<'_>) -> bool {
        c.contact
            .fields
            .first_contacted_at
            .is_some_and(|t| self.0.holds(t, ctx.now))
    }

    fn to_sql(&self, ctx: &SqlContext<'_>) -> Result<Expr, SqlError> {
        Ok(contact(Contacts::FirstContactedAt)
            .is_not_null()
            .and(self.0.sql(contact(Contacts::FirstContactedAt), ctx.now)))
    }

    fn reads(&self) -> Vec<DataRef> {
        vec![DataRef::FirstContacted]
    }

    fn time_dependent(&self) -> bool {
        self.0.time_dependent()
    }

    fn time_window_sql(&self, from: Timestamp, to: Timestamp, _: &SqlContext<'_>) -> Option<Expr> {
        let column = || contact(Contacts::FirstContactedAt);
        let window = self.0.window_sql(column(), from, to)?;
        Some(column().is_not_null().and(window))
    }
}
