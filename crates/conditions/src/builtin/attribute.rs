//! `attribute`: a custom attribute compared with a value, with operators by
//! the attribute's declared type.
//!
//! Missing data: a contact without the attribute fails every operator except
//! `not_exists` — `ne` and `not_in` included. Text comparisons are exact
//! (case-sensitive): the same on both databases and in memory.

use std::sync::Arc;

use schemars::JsonSchema;
use sea_query::{Expr, ExprTrait, Func, Query};
use segments_domain::attribute::ATTRIBUTE_KEY_PATTERN;
use segments_domain::limits::{MAX_ATTRIBUTE_KEY_CHARS, MAX_TEXT_VALUE_CHARS};
use segments_domain::{AttributeId, AttributeType, AttributeValue, Timestamp, Violations};
use serde::Deserialize;
use serde_json::Value;

use super::dates::DatePredicate;
use super::first_contacted::days;
use super::params::{
    MAX_DAYS, OtherFields, bound_schema, check_list_len, fail, parse, scalar_schema, schema_of,
    with_fields_by_op,
};
use crate::ContactSnapshot;
use crate::plugin::{
    Backend, Condition, ConditionType, DataRef, EvalContext, ParseContext, SqlContext, SqlError,
};
use crate::sql::{ContactAttributes, Contacts};

const MAX_VALUES: usize = 100;

const OPERATORS: &[&str] = &[
    "eq",
    "ne",
    "contains",
    "starts_with",
    "in",
    "not_in",
    "lt",
    "le",
    "gt",
    "ge",
    "between",
    "is",
    "before",
    "after",
    "within_last_days",
    "more_than_days_ago",
    "exists",
    "not_exists",
];

/// Which operators apply, and the fields each reads, depend on the
/// attribute's type: text: eq, ne, contains, starts_with (value), in,
/// not_in (values); number: eq, ne, lt, le, gt, ge (value), between (min,
/// max); boolean: is (value); date: before, after (value), between (min,
/// max), within_last_days, more_than_days_ago (days); any type: exists,
/// not_exists.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    /// A declared attribute's key.
    #[schemars(length(min = 1, max = MAX_ATTRIBUTE_KEY_CHARS), pattern(ATTRIBUTE_KEY_PATTERN))]
    key: String,
    #[schemars(extend("enum" = OPERATORS))]
    op: String,
    /// A value of the attribute's type (dates as RFC 3339 or `YYYY-MM-DD`).
    #[schemars(schema_with = "scalar_schema")]
    #[serde(default)]
    value: Option<Value>,
    /// `in`, `not_in`: text values.
    #[schemars(schema_with = "text_values_schema")]
    #[serde(default)]
    values: Option<Vec<Value>>,
    /// `between`: the lower bound (inclusive), a number or a date.
    #[schemars(schema_with = "bound_schema")]
    #[serde(default)]
    min: Option<Value>,
    /// `between`: the upper bound (inclusive), a number or a date.
    #[schemars(schema_with = "bound_schema")]
    #[serde(default)]
    max: Option<Value>,
    /// `within_last_days`, `more_than_days_ago`.
    #[schemars(range(max = MAX_DAYS))]
    days: Option<u32>,
}

/// The `attribute` condition type.
#[derive(Debug, Clone, Copy)]
pub struct AttributeCondition;

#[derive(Debug, Clone)]
enum Text {
    Eq(String),
    Ne(String),
    Contains(String),
    StartsWith(String),
    In(Vec<String>),
    NotIn(Vec<String>),
}

#[derive(Debug, Clone, Copy)]
enum Number {
    Eq(f64),
    Ne(f64),
    Lt(f64),
    Le(f64),
    Gt(f64),
    Ge(f64),
    Between(f64, f64),
}

#[derive(Debug, Clone)]
enum Test {
    Exists,
    NotExists,
    Text(Text),
    Number(Number),
    Boolean(bool),
    Date(DatePredicate),
}

#[derive(Debug)]
struct Compiled {
    key: String,
    id: AttributeId,
    test: Test,
}

fn operators_for(ty: AttributeType) -> &'static [&'static str] {
    match ty {
        AttributeType::Text => &[
            "eq",
            "ne",
            "contains",
            "starts_with",
            "in",
            "not_in",
            "exists",
            "not_exists",
        ],
        AttributeType::Number => &[
            "eq",
            "ne",
            "lt",
            "le",
            "gt",
            "ge",
            "between",
            "exists",
            "not_exists",
        ],
        AttributeType::Boolean => &["is", "exists", "not_exists"],
        AttributeType::Date => &[
            "before",
            "after",
            "between",
            "within_last_days",
            "more_than_days_ago",
            "exists",
            "not_exists",
        ],
    }
}

/// `values` is read as JSON values so that a wrong type is reported with
/// the attribute's type in mind ([`text`]); its schema says what passes.
fn text_values_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": ["array", "null"],
        "minItems": 1,
        "maxItems": MAX_VALUES,
        "items": {"type": "string", "maxLength": MAX_TEXT_VALUE_CHARS}
    })
}

fn required<'a>(v: Option<&'a Value>, pointer: &str) -> Result<&'a Value, Violations> {
    v.ok_or_else(|| fail(pointer, "required", "required by this operator"))
}

fn text(v: &Value, pointer: &str) -> Result<String, Violations> {
    if let Value::String(s) = v
        && let Err(e) = segments_domain::storable(s)
    {
        return Err(Violations::one(e.at(pointer)));
    }
    match v {
        Value::String(s) if s.chars().count() <= MAX_TEXT_VALUE_CHARS => Ok(s.clone()),
        Value::String(_) => Err(fail(
            pointer,
            "too_long",
            format!("at most {MAX_TEXT_VALUE_CHARS} characters"),
        )),
        _ => Err(fail(
            pointer,
            "type_mismatch",
            "expected a string: the attribute is text",
        )),
    }
}

fn number(v: &Value, pointer: &str) -> Result<f64, Violations> {
    v.as_f64().filter(|f| f.is_finite()).ok_or_else(|| {
        fail(
            pointer,
            "type_mismatch",
            "expected a number: the attribute is a number",
        )
    })
}

fn date(v: &Value, pointer: &str) -> Result<Timestamp, Violations> {
    let s = v.as_str().ok_or_else(|| {
        fail(
            pointer,
            "type_mismatch",
            "expected a date string: the attribute is a date",
        )
    })?;
    Timestamp::parse_str(s).map_err(|e| fail(pointer, e.code, e.message))
}

fn texts(values: Option<&Vec<Value>>) -> Result<Vec<String>, Violations> {
    let values = values.ok_or_else(|| fail("/values", "required", "required by this operator"))?;
    check_list_len(values.len(), "/values", MAX_VALUES)?;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| text(v, &format!("/values/{i}")))
        .collect()
}

impl Params {
    /// Refuses parameters the operator does not take, so a mistaken
    /// `{"op": "eq", "values": […]}` is not silently half-read.
    fn only(&self, allowed: &[&str]) -> Result<(), Violations> {
        let given = [
            ("value", self.value.is_some()),
            ("values", self.values.is_some()),
            ("min", self.min.is_some()),
            ("max", self.max.is_some()),
            ("days", self.days.is_some()),
        ];
        for (name, present) in given {
            if present && !allowed.contains(&name) {
                return Err(fail(
                    &format!("/{name}"),
                    "unexpected",
                    format!("operator `{}` does not take `{name}`", self.op),
                ));
            }
        }
        Ok(())
    }

    /// `min` and `max`, read as one type, with `min <= max`.
    fn range<T: PartialOrd>(
        &self,
        read: fn(&Value, &str) -> Result<T, Violations>,
    ) -> Result<(T, T), Violations> {
        let min = required(self.min.as_ref(), "/min").and_then(|v| read(v, "/min"))?;
        let max = required(self.max.as_ref(), "/max").and_then(|v| read(v, "/max"))?;
        if min > max {
            return Err(fail("/max", "empty_range", "`max` is below `min`"));
        }
        Ok((min, max))
    }

    fn test(&self, ty: AttributeType) -> Result<Test, Violations> {
        let value = || required(self.value.as_ref(), "/value");
        let op = self.op.as_str();
        let (allowed, test): (&[&str], _) = match (ty, op) {
            (_, "exists") => (&[], Ok(Test::Exists)),
            (_, "not_exists") => (&[], Ok(Test::NotExists)),
            (AttributeType::Text, "eq" | "ne" | "contains" | "starts_with") => {
                let t = value().and_then(|v| text(v, "/value")).map(|s| match op {
                    "eq" => Text::Eq(s),
                    "ne" => Text::Ne(s),
                    "contains" => Text::Contains(s),
                    _ => Text::StartsWith(s),
                });
                (&["value"], t.map(Test::Text))
            }
            (AttributeType::Text, "in") => (
                &["values"],
                texts(self.values.as_ref()).map(|v| Test::Text(Text::In(v))),
            ),
            (AttributeType::Text, "not_in") => (
                &["values"],
                texts(self.values.as_ref()).map(|v| Test::Text(Text::NotIn(v))),
            ),
            (AttributeType::Number, "eq" | "ne" | "lt" | "le" | "gt" | "ge") => {
                let n = value().and_then(|v| number(v, "/value"));
                let t = n.map(|n| match op {
                    "eq" => Number::Eq(n),
                    "ne" => Number::Ne(n),
                    "lt" => Number::Lt(n),
                    "le" => Number::Le(n),
                    "gt" => Number::Gt(n),
                    _ => Number::Ge(n),
                });
                (&["value"], t.map(Test::Number))
            }
            (AttributeType::Number, "between") => (
                &["min", "max"],
                self.range(number)
                    .map(|(a, b)| Test::Number(Number::Between(a, b))),
            ),
            (AttributeType::Boolean, "is") => {
                let t = value().and_then(|v| {
                    v.as_bool().map(Test::Boolean).ok_or_else(|| {
                        fail(
                            "/value",
                            "type_mismatch",
                            "expected a boolean: the attribute is a boolean",
                        )
                    })
                });
                (&["value"], t)
            }
            (AttributeType::Date, "before" | "after") => {
                let t = value().and_then(|v| date(v, "/value")).map(|t| {
                    if op == "before" {
                        DatePredicate::Before(t)
                    } else {
                        DatePredicate::After(t)
                    }
                });
                (&["value"], t.map(Test::Date))
            }
            (AttributeType::Date, "between") => (
                &["min", "max"],
                self.range(date)
                    .map(|(a, b)| Test::Date(DatePredicate::Between(a, b))),
            ),
            (AttributeType::Date, "within_last_days") => (
                &["days"],
                days(self.days, "/days").map(|d| Test::Date(DatePredicate::WithinLastDays(d))),
            ),
            (AttributeType::Date, "more_than_days_ago") => (
                &["days"],
                days(self.days, "/days").map(|d| Test::Date(DatePredicate::MoreThanDaysAgo(d))),
            ),
            (ty, op) => {
                let message = if OPERATORS.contains(&op) {
                    format!(
                        "operator `{op}` does not apply to {} attributes; use one of {}",
                        ty.as_str(),
                        operators_for(ty).join(", ")
                    )
                } else {
                    format!(
                        "unknown operator `{op}`; {} attributes take {}",
                        ty.as_str(),
                        operators_for(ty).join(", ")
                    )
                };
                return Err(fail("/op", "operator_mismatch", message));
            }
        };
        self.only(allowed)?;
        test
    }
}

impl ConditionType for AttributeCondition {
    fn name(&self) -> &'static str {
        "attribute"
    }

    fn description(&self) -> &'static str {
        "Contacts whose custom attribute matches: operators depend on the attribute's type. A contact without the attribute matches only `not_exists`."
    }

    fn params_schema(&self) -> Value {
        // The fields each operator reads, whatever the attribute's type
        // (which decides the value's type and which operators apply).
        with_fields_by_op(
            schema_of::<Params>(),
            &[
                (
                    "AttributeCompare",
                    &[
                        "eq",
                        "ne",
                        "contains",
                        "starts_with",
                        "lt",
                        "le",
                        "gt",
                        "ge",
                        "is",
                        "before",
                        "after",
                    ],
                    &["value"],
                ),
                ("AttributeInList", &["in", "not_in"], &["values"]),
                ("AttributeBetween", &["between"], &["min", "max"]),
                (
                    "AttributeRelativeDate",
                    &["within_last_days", "more_than_days_ago"],
                    &["days"],
                ),
                ("AttributePresence", &["exists", "not_exists"], &[]),
            ],
            OtherFields::Refused,
        )
    }

    fn parse(
        &self,
        params: &Value,
        ctx: &ParseContext<'_>,
    ) -> Result<Arc<dyn Condition>, Violations> {
        let p: Params = parse(params)?;
        let Some((id, ty)) = ctx.attributes.get(&p.key).copied() else {
            return Err(fail(
                "/key",
                "undeclared_attribute",
                format!("attribute `{}` is not declared in this workspace", p.key),
            ));
        };
        let test = p.test(ty)?;
        Ok(Arc::new(Compiled {
            key: p.key,
            id,
            test,
        }))
    }
}

impl Test {
    fn holds(&self, value: Option<&AttributeValue>, now: Timestamp) -> bool {
        let Some(value) = value else {
            return matches!(self, Test::NotExists);
        };
        match (self, value) {
            (Test::Exists, _) => true,
            (Test::NotExists, _) => false,
            (Test::Text(t), AttributeValue::Text(s)) => match t {
                Text::Eq(x) => s == x,
                Text::Ne(x) => s != x,
                Text::Contains(x) => s.contains(x.as_str()),
                Text::StartsWith(x) => s.starts_with(x.as_str()),
                Text::In(xs) => xs.contains(s),
                Text::NotIn(xs) => !xs.contains(s),
            },
            (Test::Number(t), AttributeValue::Number(n)) => {
                let n = *n;
                match *t {
                    Number::Eq(x) => n == x,
                    Number::Ne(x) => n != x,
                    Number::Lt(x) => n < x,
                    Number::Le(x) => n <= x,
                    Number::Gt(x) => n > x,
                    Number::Ge(x) => n >= x,
                    Number::Between(a, b) => a <= n && n <= b,
                }
            }
            (Test::Boolean(b), AttributeValue::Boolean(v)) => b == v,
            (Test::Date(p), AttributeValue::Date(t)) => p.holds(*t, now),
            // A value of another type than the definition's cannot be stored;
            // if one ever were, it matches nothing, as in SQL (the typed column is NULL).
            _ => false,
        }
    }

    /// The predicate on the attribute's row, or `None` for bare existence.
    fn row_sql(&self, ctx: &SqlContext<'_>) -> Option<Expr> {
        let col = |c: ContactAttributes| Expr::col((ContactAttributes::Table, c));
        Some(match self {
            Test::Exists | Test::NotExists => return None,
            Test::Text(t) => {
                let v = || col(ContactAttributes::ValueText);
                let present = v().is_not_null();
                present.and(match t {
                    Text::Eq(x) => v().eq(x.as_str()),
                    Text::Ne(x) => v().ne(x.as_str()),
                    Text::In(xs) => v().is_in(xs.iter().cloned()),
                    Text::NotIn(xs) => v().is_not_in(xs.iter().cloned()),
                    // Position functions count characters on both backends.
                    Text::Contains(x) => {
                        let name = match ctx.backend {
                            Backend::Sqlite => "instr",
                            Backend::Postgres => "strpos",
                        };
                        Expr::expr(Func::cust(name).arg(v()).arg(x.as_str())).gt(0)
                    }
                    Text::StartsWith(x) => {
                        let len = i32::try_from(x.chars().count()).unwrap_or(i32::MAX);
                        Expr::expr(Func::cust("substr").arg(v()).arg(1).arg(len)).eq(x.as_str())
                    }
                })
            }
            Test::Number(t) => {
                let v = || col(ContactAttributes::ValueNumber);
                v().is_not_null().and(match *t {
                    Number::Eq(x) => v().eq(x),
                    Number::Ne(x) => v().ne(x),
                    Number::Lt(x) => v().lt(x),
                    Number::Le(x) => v().lte(x),
                    Number::Gt(x) => v().gt(x),
                    Number::Ge(x) => v().gte(x),
                    Number::Between(a, b) => v().gte(a).and(v().lte(b)),
                })
            }
            Test::Boolean(b) => col(ContactAttributes::ValueBool)
                .is_not_null()
                .and(col(ContactAttributes::ValueBool).eq(*b)),
            Test::Date(p) => col(ContactAttributes::ValueDate)
                .is_not_null()
                .and(p.sql(col(ContactAttributes::ValueDate), ctx.now)),
        })
    }
}

impl Condition for Compiled {
    fn matches(&self, c: &ContactSnapshot, ctx: &EvalContext<'_>) -> bool {
        self.test
            .holds(c.contact.attributes.get(&self.key), ctx.now)
    }

    fn to_sql(&self, ctx: &SqlContext<'_>) -> Result<Expr, SqlError> {
        let mut row = self.value_row();
        if let Some(predicate) = self.test.row_sql(ctx) {
            row.and_where(predicate);
        }
        let exists = Expr::exists(row.to_owned());
        Ok(if matches!(self.test, Test::NotExists) {
            exists.not()
        } else {
            exists
        })
    }

    fn reads(&self) -> Vec<DataRef> {
        vec![DataRef::Attribute(self.key.clone())]
    }

    fn time_dependent(&self) -> bool {
        matches!(self.test, Test::Date(p) if p.time_dependent())
    }

    fn time_window_sql(&self, from: Timestamp, to: Timestamp, _: &SqlContext<'_>) -> Option<Expr> {
        let Test::Date(predicate) = &self.test else {
            return None;
        };
        let value = || Expr::col((ContactAttributes::Table, ContactAttributes::ValueDate));
        let window = predicate.window_sql(value(), from, to)?;
        let mut row = self.value_row();
        row.and_where(value().is_not_null().and(window));
        Some(Expr::exists(row.to_owned()))
    }
}

impl Compiled {
    /// The contact's value row of this attribute (`SELECT 1 … WHERE`).
    fn value_row(&self) -> sea_query::SelectStatement {
        let mut row = Query::select();
        row.expr(Expr::val(1))
            .from(ContactAttributes::Table)
            .and_where(
                Expr::col((ContactAttributes::Table, ContactAttributes::ContactId))
                    .equals((Contacts::Table, Contacts::Id)),
            )
            .and_where(
                Expr::col((ContactAttributes::Table, ContactAttributes::AttributeId)).eq(self.id.0),
            );
        row
    }
}
