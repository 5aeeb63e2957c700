//! A workspace's segments, as the engine needs them to resolve references.

use std::collections::{BTreeMap, BTreeSet};

use sea_query::{Expr, ExprTrait, Query};
use segments_domain::SegmentId;

use crate::plugin::{EvalContext, SegmentEvaluator, SegmentSql, SqlContext, SqlError};
use crate::sql::{Contacts, SegmentMembers};
use crate::{ContactSnapshot, Tree};

/// How deep segment references may nest at evaluation time. Saving refuses
/// cycles, so this only guards against a database edited by hand.
const MAX_REFERENCE_DEPTH: usize = 32;

#[derive(Debug, Clone)]
pub enum SegmentKind {
    /// Members are added and removed by hand.
    Static,
    /// Members are the contacts that satisfy the tree.
    Dynamic(Tree),
}

#[derive(Debug, Clone)]
pub struct SegmentDefinition {
    pub id: SegmentId,
    pub name: String,
    pub kind: SegmentKind,
}

/// The segments of one workspace.
#[derive(Debug, Clone, Default)]
pub struct SegmentSet {
    segments: BTreeMap<SegmentId, SegmentDefinition>,
}

impl SegmentSet {
    pub fn new(definitions: impl IntoIterator<Item = SegmentDefinition>) -> Self {
        Self {
            segments: definitions.into_iter().map(|d| (d.id, d)).collect(),
        }
    }

    pub fn get(&self, id: SegmentId) -> Option<&SegmentDefinition> {
        self.segments.get(&id)
    }

    pub fn contains(&self, id: SegmentId) -> bool {
        self.segments.contains_key(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &SegmentDefinition> {
        self.segments.values()
    }

    /// The segments `id` refers to directly.
    pub fn references(&self, id: SegmentId) -> BTreeSet<SegmentId> {
        match self.segments.get(&id).map(|d| &d.kind) {
            Some(SegmentKind::Dynamic(tree)) => tree.segment_refs(),
            _ => BTreeSet::new(),
        }
    }

    /// A reference path from `from` back to `to`, if one exists: saving
    /// `to` with a reference to `from` would then close a cycle.
    pub fn path(&self, from: SegmentId, to: SegmentId) -> Option<Vec<SegmentId>> {
        let mut stack = vec![vec![from]];
        let mut seen = BTreeSet::new();
        while let Some(path) = stack.pop() {
            let last = *path.last()?;
            if last == to {
                return Some(path);
            }
            if !seen.insert(last) {
                continue;
            }
            for next in self.references(last) {
                let mut longer = path.clone();
                longer.push(next);
                stack.push(longer);
            }
        }
        None
    }

    /// Segments in an order where every segment comes after those it
    /// references (dependencies first).
    pub fn dependency_order(&self) -> Vec<SegmentId> {
        let mut order = Vec::with_capacity(self.segments.len());
        let mut done = BTreeSet::new();
        for id in self.segments.keys() {
            self.visit(*id, &mut done, &mut BTreeSet::new(), &mut order);
        }
        order
    }

    fn visit(
        &self,
        id: SegmentId,
        done: &mut BTreeSet<SegmentId>,
        visiting: &mut BTreeSet<SegmentId>,
        order: &mut Vec<SegmentId>,
    ) {
        if done.contains(&id) || !visiting.insert(id) {
            return;
        }
        for dep in self.references(id) {
            self.visit(dep, done, visiting, order);
        }
        visiting.remove(&id);
        done.insert(id);
        order.push(id);
    }

    /// The segments whose trees reference `id`, directly or not.
    pub fn dependents(&self, id: SegmentId) -> BTreeSet<SegmentId> {
        let mut out = BTreeSet::new();
        let mut frontier = vec![id];
        while let Some(current) = frontier.pop() {
            for d in self.segments.values() {
                if self.references(d.id).contains(&current) && out.insert(d.id) {
                    frontier.push(d.id);
                }
            }
        }
        out
    }

    /// Whether time alone can change `id`'s membership, through its own tree
    /// or a segment it references.
    pub fn time_dependent(&self, id: SegmentId) -> bool {
        let mut seen = BTreeSet::new();
        let mut frontier = vec![id];
        while let Some(current) = frontier.pop() {
            if !seen.insert(current) {
                continue;
            }
            if let Some(SegmentKind::Dynamic(tree)) = self.segments.get(&current).map(|d| &d.kind) {
                if tree.time_dependent() {
                    return true;
                }
                frontier.extend(tree.segment_refs());
            }
        }
        false
    }
}

impl SegmentEvaluator for SegmentSet {
    fn is_member(
        &self,
        segment: SegmentId,
        contact: &ContactSnapshot,
        ctx: &EvalContext<'_>,
    ) -> bool {
        if ctx.depth >= MAX_REFERENCE_DEPTH {
            return false;
        }
        match self.segments.get(&segment).map(|d| &d.kind) {
            Some(SegmentKind::Static) => contact.static_segments.contains(&segment),
            Some(SegmentKind::Dynamic(tree)) => {
                let inner = EvalContext {
                    depth: ctx.depth + 1,
                    ..*ctx
                };
                tree.matches(contact, &inner)
            }
            None => false,
        }
    }
}

impl SegmentSql for SegmentSet {
    fn membership_sql(&self, segment: SegmentId, ctx: &SqlContext<'_>) -> Result<Expr, SqlError> {
        if ctx.depth >= MAX_REFERENCE_DEPTH {
            return Err(SqlError::TooDeep(MAX_REFERENCE_DEPTH));
        }
        match self.segments.get(&segment).map(|d| &d.kind) {
            Some(SegmentKind::Static) => Ok(Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from(SegmentMembers::Table)
                    .and_where(
                        Expr::col((SegmentMembers::Table, SegmentMembers::SegmentId)).eq(segment.0),
                    )
                    .and_where(
                        Expr::col((SegmentMembers::Table, SegmentMembers::ContactId))
                            .equals((Contacts::Table, Contacts::Id)),
                    )
                    .to_owned(),
            )),
            Some(SegmentKind::Dynamic(tree)) => {
                let inner = SqlContext {
                    depth: ctx.depth + 1,
                    ..*ctx
                };
                tree.to_sql(&inner)
            }
            None => Err(SqlError::MissingSegment(segment)),
        }
    }
}
