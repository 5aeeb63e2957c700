//! Condition trees: `all` (AND), `any` (OR) and `not` over leaves.
//!
//! JSON form, one of:
//! `{"all": [node…]}`, `{"any": [node…]}`, `{"not": node}`,
//! `{"type": "<condition type>", "params": {…}}`.
//! An empty `all` is true and an empty `any` false, as in logic.

use std::collections::BTreeSet;
use std::sync::Arc;

use sea_query::{Expr, ExprTrait, Query, UnionType};
use segments_domain::{FieldError, SegmentId, Violations};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::plugin::{Condition, DataRef, EvalContext, ParseContext, SqlContext, SqlError};
use crate::sql::Contacts;
use crate::{ContactSnapshot, Registry};

/// Bounds on a tree's size, so that a request cannot make the database (or
/// the in-memory evaluator) do unbounded work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Levels, counting the leaves: `{"type": …}` alone has depth 1.
    pub max_depth: usize,
    pub max_leaves: usize,
    /// Conditions once every segment reference is inlined: a tree within
    /// the other limits can still refer to segments that refer to others,
    /// and evaluation costs what the whole expansion costs.
    pub max_expanded_leaves: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 5,
            max_leaves: 100,
            max_expanded_leaves: 1_000,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Tree {
    All(Vec<Tree>),
    Any(Vec<Tree>),
    Not(Box<Tree>),
    Leaf(Leaf),
}

#[derive(Debug, Clone)]
pub struct Leaf {
    pub type_name: String,
    pub params: Value,
    pub condition: Arc<dyn Condition>,
}

/// A tree annotated with each node's truth for one contact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// `all`, `any`, `not` or `condition`.
    pub node: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    pub result: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Explanation>,
}

struct Parser<'a> {
    registry: &'a Registry,
    ctx: &'a ParseContext<'a>,
    limits: Limits,
    leaves: usize,
    violations: Violations,
}

const GROUPS: [&str; 3] = ["all", "any", "not"];

impl Parser<'_> {
    fn node(&mut self, value: &Value, pointer: &str, depth: usize) -> Option<Tree> {
        let Some(object) = value.as_object() else {
            self.violations.push(
                FieldError::new("invalid_node", "a condition node must be an object").at(pointer),
            );
            return None;
        };
        if depth > self.limits.max_depth {
            self.violations.push(
                FieldError::new(
                    "too_deep",
                    format!(
                        "conditions nest deeper than the limit of {} levels",
                        self.limits.max_depth
                    ),
                )
                .at(pointer),
            );
            return None;
        }
        let groups: Vec<&str> = GROUPS
            .into_iter()
            .filter(|g| object.contains_key(*g))
            .collect();
        match groups.as_slice() {
            [] => self.leaf(object, pointer),
            [group] if object.len() == 1 => self.group(group, &object[*group], pointer, depth),
            _ => {
                self.violations.push(
                    FieldError::new(
                        "invalid_node",
                        "a group node has exactly one key: all, any or not",
                    )
                    .at(pointer),
                );
                None
            }
        }
    }

    fn group(&mut self, group: &str, value: &Value, pointer: &str, depth: usize) -> Option<Tree> {
        let at = format!("{pointer}/{group}");
        if group == "not" {
            return self
                .node(value, &at, depth + 1)
                .map(|t| Tree::Not(Box::new(t)));
        }
        let Some(items) = value.as_array() else {
            self.violations.push(
                FieldError::new("invalid_node", format!("`{group}` takes an array of nodes"))
                    .at(at),
            );
            return None;
        };
        let children: Vec<Option<Tree>> = items
            .iter()
            .enumerate()
            .map(|(i, item)| self.node(item, &format!("{at}/{i}"), depth + 1))
            .collect();
        let children: Option<Vec<Tree>> = children.into_iter().collect();
        let children = children?;
        Some(if group == "all" {
            Tree::All(children)
        } else {
            Tree::Any(children)
        })
    }

    fn leaf(&mut self, object: &Map<String, Value>, pointer: &str) -> Option<Tree> {
        self.leaves += 1;
        if self.leaves == self.limits.max_leaves.saturating_add(1) {
            self.violations.push(
                FieldError::new(
                    "too_many_conditions",
                    format!("a tree holds at most {} conditions", self.limits.max_leaves),
                )
                .at(pointer),
            );
        }
        if let Some(unknown) = object.keys().find(|k| *k != "type" && *k != "params") {
            self.violations.push(
                FieldError::new(
                    "unknown_field",
                    format!("unknown field `{unknown}`; a condition has `type` and `params`"),
                )
                .at(format!(
                    "{pointer}/{}",
                    segments_domain::violation::pointer_token(unknown)
                )),
            );
            return None;
        }
        let Some(type_name) = object.get("type").and_then(Value::as_str) else {
            self.violations.push(
                FieldError::new(
                    "required",
                    "a node needs `type` (a condition) or one of all, any, not (a group)",
                )
                .at(format!("{pointer}/type")),
            );
            return None;
        };
        let Some(plugin) = self.registry.get(type_name) else {
            self.violations.push(
                FieldError::new(
                    "unknown_condition_type",
                    format!(
                        "unknown condition type `{type_name}`; known types: {}",
                        self.registry.names().join(", ")
                    ),
                )
                .at(format!("{pointer}/type")),
            );
            return None;
        };
        let params = object.get("params").cloned().unwrap_or_else(|| json!({}));
        match plugin.parse(&params, self.ctx) {
            Ok(condition) => Some(Tree::Leaf(Leaf {
                type_name: type_name.to_owned(),
                params,
                condition,
            })),
            Err(v) => {
                for violation in v.prefixed(&format!("{pointer}/params")).into_vec() {
                    self.violations.push(violation);
                }
                None
            }
        }
    }
}

impl Tree {
    /// Validates a JSON tree. Every failure is reported with the JSON Pointer
    /// of the offending node, relative to the tree's root.
    pub fn parse(
        value: &Value,
        registry: &Registry,
        ctx: &ParseContext<'_>,
        limits: Limits,
    ) -> Result<Tree, Violations> {
        let mut parser = Parser {
            registry,
            ctx,
            limits,
            leaves: 0,
            violations: Violations::new(),
        };
        let tree = parser.node(value, "", 1);
        match tree {
            Some(tree) if parser.violations.is_empty() => Ok(tree),
            _ => Err(parser.violations),
        }
    }

    /// The tree's JSON form, as it was given.
    pub fn to_json(&self) -> Value {
        match self {
            Tree::All(c) => json!({"all": c.iter().map(Tree::to_json).collect::<Vec<_>>()}),
            Tree::Any(c) => json!({"any": c.iter().map(Tree::to_json).collect::<Vec<_>>()}),
            Tree::Not(c) => json!({"not": c.to_json()}),
            Tree::Leaf(l) => json!({"type": l.type_name, "params": l.params}),
        }
    }

    pub fn matches(&self, contact: &ContactSnapshot, ctx: &EvalContext<'_>) -> bool {
        match self {
            Tree::All(c) => c.iter().all(|t| t.matches(contact, ctx)),
            Tree::Any(c) => c.iter().any(|t| t.matches(contact, ctx)),
            Tree::Not(c) => !c.matches(contact, ctx),
            Tree::Leaf(l) => l.condition.matches(contact, ctx),
        }
    }

    /// The tree as one boolean SQL expression over the row `contacts`.
    pub fn to_sql(&self, ctx: &SqlContext<'_>) -> Result<Expr, SqlError> {
        Ok(match self {
            Tree::All(c) => {
                let mut parts = c.iter().map(|t| t.to_sql(ctx));
                match parts.next().transpose()? {
                    None => Expr::val(true),
                    Some(first) => parts.try_fold(first, |acc, p| p.map(|p| acc.and(p)))?,
                }
            }
            Tree::Any(c) if c.len() >= 2 => {
                // `a OR b` over sub-queries makes PostgreSQL probe each
                // hashed sub-plan for every contact, in one process; the
                // union of each branch's ids lets it plan every branch as a
                // semi-join (2x faster on a million contacts, BENCHMARKS.md).
                // The inner `contacts` shadows the outer one in each branch.
                let mut branches = c.iter().map(|t| {
                    t.to_sql(ctx).map(|condition| {
                        Query::select()
                            .column((Contacts::Table, Contacts::Id))
                            .from(Contacts::Table)
                            .and_where(
                                Expr::col((Contacts::Table, Contacts::WorkspaceId))
                                    .eq(ctx.workspace_id.0),
                            )
                            .and_where(condition)
                            .to_owned()
                    })
                });
                let mut union = branches
                    .next()
                    .transpose()?
                    .unwrap_or_else(|| Query::select().to_owned());
                for branch in branches {
                    union.union(UnionType::Distinct, branch?);
                }
                Expr::col((Contacts::Table, Contacts::Id)).in_subquery(union)
            }
            Tree::Any(c) => match c.first() {
                None => Expr::val(false),
                Some(only) => only.to_sql(ctx)?,
            },
            Tree::Not(c) => c.to_sql(ctx)?.not(),
            Tree::Leaf(l) => l.condition.to_sql(ctx)?,
        })
    }

    /// Everything the tree reads.
    pub fn reads(&self) -> BTreeSet<DataRef> {
        let mut out = BTreeSet::new();
        self.walk(&mut |leaf| out.extend(leaf.condition.reads()));
        out
    }

    /// The segments the tree refers to directly.
    pub fn segment_refs(&self) -> BTreeSet<SegmentId> {
        self.reads()
            .into_iter()
            .filter_map(|r| match r {
                DataRef::Segment(id) => Some(id),
                _ => None,
            })
            .collect()
    }

    /// Whether the passing of time alone can change the tree's own truth
    /// (see `SegmentSet::time_dependent` for references).
    pub fn time_dependent(&self) -> bool {
        let mut any = false;
        self.walk(&mut |leaf| any |= leaf.condition.time_dependent());
        any
    }

    /// The time windows of its time-dependent leaves (see
    /// `Condition::time_window_sql`); `None` when one cannot say.
    pub(crate) fn time_windows(
        &self,
        from: segments_domain::Timestamp,
        to: segments_domain::Timestamp,
        ctx: &SqlContext<'_>,
        out: &mut Vec<Expr>,
    ) -> Option<()> {
        let mut known = true;
        self.walk(&mut |leaf| {
            if leaf.condition.time_dependent() {
                match leaf.condition.time_window_sql(from, to, ctx) {
                    Some(window) => out.push(window),
                    None => known = false,
                }
            }
        });
        known.then_some(())
    }

    /// Calls `f` on every leaf, in order.
    pub fn for_each_leaf(&self, f: &mut impl FnMut(&Leaf)) {
        self.walk(f);
    }

    fn walk(&self, f: &mut impl FnMut(&Leaf)) {
        match self {
            Tree::All(c) | Tree::Any(c) => c.iter().for_each(|t| t.walk(f)),
            Tree::Not(c) => c.walk(f),
            Tree::Leaf(l) => f(l),
        }
    }

    /// Each node with its truth for `contact`: why it is, or is not, a member.
    pub fn explain(&self, contact: &ContactSnapshot, ctx: &EvalContext<'_>) -> Explanation {
        let group = |node, children: &[Tree]| {
            let children: Vec<Explanation> =
                children.iter().map(|c| c.explain(contact, ctx)).collect();
            let result = if node == "all" {
                children.iter().all(|c| c.result)
            } else {
                children.iter().any(|c| c.result)
            };
            Explanation {
                node,
                r#type: None,
                params: None,
                result,
                children,
            }
        };
        match self {
            Tree::All(c) => group("all", c),
            Tree::Any(c) => group("any", c),
            Tree::Not(c) => {
                let inner = c.explain(contact, ctx);
                Explanation {
                    node: "not",
                    r#type: None,
                    params: None,
                    result: !inner.result,
                    children: vec![inner],
                }
            }
            Tree::Leaf(l) => Explanation {
                node: "condition",
                r#type: Some(l.type_name.clone()),
                params: Some(l.params.clone()),
                result: l.condition.matches(contact, ctx),
                children: Vec::new(),
            },
        }
    }
}
