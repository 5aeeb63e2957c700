//! A workspace's segments, as the engine needs them to resolve references.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sea_query::{Expr, ExprTrait, Query};
use segments_domain::SegmentId;

use crate::plugin::{DataRef, EvalContext, SegmentEvaluator, SegmentSql, SqlContext, SqlError};
use crate::sql::{Contacts, SegmentMembers};
use crate::{ContactSnapshot, Tree};

/// How deep segment references may nest: the longest chain of segments one
/// tree reaches, itself included. Saving refuses longer chains (and
/// cycles), so evaluation never meets one unless the database was edited by
/// hand.
pub const MAX_REFERENCE_DEPTH: usize = 32;

/// The size of a tree once its references are inlined — what evaluating it
/// costs, whatever its own size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expansion {
    /// Segments in the longest reference chain below (0: no references).
    pub chain: usize,
    /// Conditions, each reference counted as the conditions it stands for.
    pub leaves: usize,
}

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

/// The segments of one workspace, with what every change-driven job asks
/// of them worked out once (a catalog is loaded once and serves many jobs:
/// walking a thousand trees per job cost more than the job's own work).
#[derive(Debug, Clone, Default)]
pub struct SegmentSet {
    segments: BTreeMap<SegmentId, SegmentDefinition>,
    /// What each segment reads directly; a static segment, its own membership.
    reads: BTreeMap<SegmentId, Vec<DataRef>>,
    /// The segments referring to each segment directly.
    referrers: BTreeMap<SegmentId, Vec<SegmentId>>,
    /// Dependencies first.
    order: Vec<SegmentId>,
    /// The segments reading each change key directly.
    by_change_key: HashMap<String, Vec<SegmentId>>,
    /// Segments reading some named tag (a replaced tag set reaches them).
    reading_a_tag: Vec<SegmentId>,
    /// Segments reading the whole tag set (any named tag reaches them).
    reading_all_tags: Vec<SegmentId>,
    /// Every segment's `fingerprint`, worked out on first use: a catalog
    /// serves many reads, and a contact's segments ask for all of them.
    fingerprints: std::sync::OnceLock<BTreeMap<SegmentId, String>>,
}

impl SegmentSet {
    pub fn new(definitions: impl IntoIterator<Item = SegmentDefinition>) -> Self {
        let segments: BTreeMap<SegmentId, SegmentDefinition> =
            definitions.into_iter().map(|d| (d.id, d)).collect();
        let reads: BTreeMap<SegmentId, Vec<DataRef>> = segments
            .values()
            .map(|d| {
                let reads = match &d.kind {
                    SegmentKind::Static => vec![DataRef::Segment(d.id)],
                    SegmentKind::Dynamic(tree) => tree.reads().into_iter().collect(),
                };
                (d.id, reads)
            })
            .collect();
        let mut referrers: BTreeMap<SegmentId, Vec<SegmentId>> = BTreeMap::new();
        for (id, definition) in &segments {
            if let SegmentKind::Dynamic(tree) = &definition.kind {
                for target in tree.segment_refs() {
                    referrers.entry(target).or_default().push(*id);
                }
            }
        }
        let mut by_change_key: HashMap<String, Vec<SegmentId>> = HashMap::new();
        let mut reading_a_tag = Vec::new();
        let mut reading_all_tags = Vec::new();
        for (id, refs) in &reads {
            for r in refs {
                by_change_key.entry(r.change_key()).or_default().push(*id);
            }
            if refs.iter().any(|r| matches!(r, DataRef::Tag(_))) {
                reading_a_tag.push(*id);
            }
            if refs.contains(&DataRef::Tags) {
                reading_all_tags.push(*id);
            }
        }
        let mut set = Self {
            segments,
            reads,
            referrers,
            order: Vec::new(),
            by_change_key,
            reading_a_tag,
            reading_all_tags,
            fingerprints: std::sync::OnceLock::new(),
        };
        let mut order = Vec::with_capacity(set.segments.len());
        let mut done = BTreeSet::new();
        for id in set.segments.keys() {
            set.visit(*id, &mut done, &mut BTreeSet::new(), &mut order);
        }
        set.order = order;
        set
    }

    /// The segments whose own conditions read something a write recorded
    /// with `changed` keys can change, found through an index rather than by
    /// walking every segment. A key reaches the data it names
    /// ([`DataRef::change_key`]); [`ALL_CHANGES`](crate::plugin::ALL_CHANGES)
    /// reaches everything; a replaced tag set (`tags`) reaches every named
    /// tag, and an added or removed tag (`tag:<key>`) conditions on the whole
    /// tag set.
    pub fn reading(&self, changed: &BTreeSet<&str>) -> BTreeSet<SegmentId> {
        if changed.contains(crate::plugin::ALL_CHANGES) {
            return self.segments.keys().copied().collect();
        }
        let mut out = BTreeSet::new();
        for key in changed {
            out.extend(self.by_change_key.get(*key).into_iter().flatten());
            if *key == DataRef::Tags.change_key() {
                out.extend(&self.reading_a_tag);
            }
            if key.starts_with("tag:") {
                out.extend(&self.reading_all_tags);
            }
        }
        out
    }

    /// What `id`'s own conditions read (a static segment: its membership).
    pub fn reads(&self, id: SegmentId) -> &[DataRef] {
        self.reads.get(&id).map_or(&[], Vec::as_slice)
    }

    /// Whether evaluating `id` in memory needs contacts' static
    /// memberships: it is static, or refers to a static segment, directly
    /// or not.
    pub fn reads_static(&self, id: SegmentId) -> bool {
        self.any_reachable(id, |kind| matches!(kind, SegmentKind::Static))
    }

    /// Whether `test` holds for `id` or for a segment it refers to, directly
    /// or not.
    fn any_reachable(&self, id: SegmentId, test: impl Fn(&SegmentKind) -> bool) -> bool {
        let mut seen = BTreeSet::new();
        let mut frontier = vec![id];
        while let Some(current) = frontier.pop() {
            if !seen.insert(current) {
                continue;
            }
            if let Some(definition) = self.segments.get(&current) {
                if test(&definition.kind) {
                    return true;
                }
                frontier.extend(self.references(current));
            }
        }
        false
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
            Some(SegmentKind::Dynamic(_)) => self
                .reads(id)
                .iter()
                .filter_map(|r| match r {
                    DataRef::Segment(target) => Some(*target),
                    _ => None,
                })
                .collect(),
            _ => BTreeSet::new(),
        }
    }

    /// A stable fingerprint (FNV-1a, hex) of what `id`'s membership is
    /// defined by: its tree and the tree of every segment it reaches. A set
    /// records the fingerprint it was built for, so a reader can tell a set
    /// that reflects an earlier definition — of the segment or of one it
    /// refers to — from a current one, whichever process edited it.
    pub fn fingerprint(&self, id: SegmentId) -> String {
        self.fingerprints
            .get_or_init(|| {
                self.segments
                    .keys()
                    .map(|s| (*s, self.compute_fingerprint(*s)))
                    .collect()
            })
            .get(&id)
            .cloned()
            .unwrap_or_else(|| self.compute_fingerprint(id))
    }

    /// Whether a set built for the definition fingerprinted `recorded`
    /// (what the build stored) reflects `id`'s definition in this set: the
    /// one test every reader and the reconciler apply.
    pub fn built_for_current(&self, id: SegmentId, recorded: Option<&str>) -> bool {
        recorded == Some(self.fingerprint(id).as_str())
    }

    fn compute_fingerprint(&self, id: SegmentId) -> String {
        let mut reached = BTreeSet::new();
        let mut frontier = vec![id];
        while let Some(current) = frontier.pop() {
            if reached.insert(current) {
                frontier.extend(self.references(current));
            }
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for byte in bytes {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        // The segment's own tree first, then the others in id order: a
        // segment without references keeps the fingerprint of its tree.
        for segment in std::iter::once(id).chain(reached.into_iter().filter(|s| *s != id)) {
            if segment != id {
                feed(format!("\n{}=", segment.0).as_bytes());
            }
            match self.segments.get(&segment).map(|d| &d.kind) {
                Some(SegmentKind::Dynamic(tree)) => feed(tree.to_json().to_string().as_bytes()),
                Some(SegmentKind::Static) => feed(b"static"),
                None => feed(b"missing"),
            }
        }
        format!("{hash:016x}")
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
        self.order.clone()
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
            for referrer in self.referrers.get(&current).into_iter().flatten() {
                if out.insert(*referrer) {
                    frontier.push(*referrer);
                }
            }
        }
        out
    }

    /// SQL that holds for every contact whose membership of `id` may change
    /// between `from` and `to` by time alone: the windows of the
    /// time-dependent conditions of its tree and of every segment it reaches
    /// (a membership can only flip where one of its conditions does). `None`
    /// when a condition cannot say, or none moves with time.
    pub fn time_window_sql(
        &self,
        id: SegmentId,
        from: segments_domain::Timestamp,
        to: segments_domain::Timestamp,
        ctx: &SqlContext<'_>,
    ) -> Option<Expr> {
        let mut windows = Vec::new();
        let mut seen = BTreeSet::new();
        let mut frontier = vec![id];
        while let Some(current) = frontier.pop() {
            if !seen.insert(current) {
                continue;
            }
            if let Some(SegmentKind::Dynamic(tree)) = self.segments.get(&current).map(|d| &d.kind) {
                tree.time_windows(from, to, ctx, &mut windows)?;
            }
            frontier.extend(self.references(current));
        }
        windows.into_iter().reduce(ExprTrait::or)
    }

    /// Whether time alone can change `id`'s membership, through its own tree
    /// or a segment it references.
    pub fn time_dependent(&self, id: SegmentId) -> bool {
        self.any_reachable(
            id,
            |kind| matches!(kind, SegmentKind::Dynamic(tree) if tree.time_dependent()),
        )
    }
}

impl SegmentSet {
    /// `tree`'s size with every reference inlined (each occurrence counts).
    pub fn expansion(&self, tree: &Tree) -> Expansion {
        self.tree_expansion(tree, &mut HashMap::new(), 0)
    }

    /// A saved segment's size inlined: its chain counts itself.
    pub fn segment_expansion(&self, id: SegmentId) -> Expansion {
        self.expansion_of(id, &mut HashMap::new(), 0)
    }

    fn tree_expansion(
        &self,
        tree: &Tree,
        memo: &mut HashMap<SegmentId, Expansion>,
        depth: usize,
    ) -> Expansion {
        let mut out = Expansion::default();
        tree.for_each_leaf(&mut |leaf| {
            let targets: Vec<SegmentId> = leaf
                .condition
                .reads()
                .into_iter()
                .filter_map(|r| match r {
                    DataRef::Segment(id) => Some(id),
                    _ => None,
                })
                .collect();
            if targets.is_empty() {
                out.leaves = out.leaves.saturating_add(1);
            }
            for target in targets {
                let inner = self.expansion_of(target, memo, depth + 1);
                out.leaves = out.leaves.saturating_add(inner.leaves);
                out.chain = out.chain.max(inner.chain);
            }
        });
        out
    }

    fn expansion_of(
        &self,
        id: SegmentId,
        memo: &mut HashMap<SegmentId, Expansion>,
        depth: usize,
    ) -> Expansion {
        if let Some(known) = memo.get(&id) {
            return *known;
        }
        // A cycle (a database edited by hand) is as deep as it gets.
        if depth > MAX_REFERENCE_DEPTH {
            return Expansion {
                chain: usize::MAX / 2,
                leaves: usize::MAX / 2,
            };
        }
        let e = match self.segments.get(&id).map(|d| &d.kind) {
            Some(SegmentKind::Dynamic(tree)) => {
                let inner = self.tree_expansion(tree, memo, depth);
                Expansion {
                    chain: inner.chain.saturating_add(1),
                    leaves: inner.leaves,
                }
            }
            // A static segment is one membership lookup.
            _ => Expansion {
                chain: 1,
                leaves: 1,
            },
        };
        memo.insert(id, e);
        e
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::{Limits, ParseContext, Registry};

    fn dynamic(known: &SegmentSet, id: i64, tree: serde_json::Value) -> SegmentDefinition {
        let attributes = HashMap::new();
        let ctx = ParseContext {
            attributes: &attributes,
            segments: known,
            current_segment: None,
        };
        let tree = Tree::parse(&tree, &Registry::builtin(), &ctx, Limits::default())
            .unwrap_or_else(|v| panic!("{v:?}"));
        SegmentDefinition {
            id: SegmentId(id),
            name: format!("s{id}"),
            kind: SegmentKind::Dynamic(tree),
        }
    }

    fn member_of(id: i64) -> serde_json::Value {
        json!({"type": "segment", "params": {"op": "member_of", "segment_id": id}})
    }

    /// 1 static ← 2 ← 3 (each refers to the previous), 4 on a tag alone.
    fn chain() -> SegmentSet {
        let one = SegmentDefinition {
            id: SegmentId(1),
            name: "s1".into(),
            kind: SegmentKind::Static,
        };
        let known = SegmentSet::new([one.clone()]);
        let two = dynamic(&known, 2, member_of(1));
        let known = SegmentSet::new([one.clone(), two.clone()]);
        let three = dynamic(&known, 3, member_of(2));
        let four = dynamic(
            &known,
            4,
            json!({"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}),
        );
        // Given out of order: the order is the set's to work out.
        SegmentSet::new([four, three, two, one])
    }

    #[test]
    fn dependencies_come_first_and_dependents_are_transitive() {
        let set = chain();
        let order = set.dependency_order();
        let at = |id: i64| order.iter().position(|s| *s == SegmentId(id));
        assert!(at(1) < at(2) && at(2) < at(3), "{order:?}");
        assert_eq!(order.len(), 4);
        assert_eq!(
            set.dependents(SegmentId(1)),
            BTreeSet::from([SegmentId(2), SegmentId(3)])
        );
        assert!(set.dependents(SegmentId(4)).is_empty());
        assert_eq!(set.references(SegmentId(3)), BTreeSet::from([SegmentId(2)]));
    }

    #[test]
    fn a_fingerprint_follows_the_definitions_a_segment_reaches() {
        let set = chain();
        // Segment 2 edited to a tag: 3 (which refers to it) changes too; 4,
        // which reaches neither, does not.
        let mut edited: Vec<SegmentDefinition> = set.iter().cloned().collect();
        let two = dynamic(
            &set,
            2,
            json!({"type": "tag", "params": {"op": "has_any", "tags": ["new"]}}),
        );
        edited.retain(|d| d.id != SegmentId(2));
        edited.push(two);
        let edited = SegmentSet::new(edited);
        for (id, changes) in [(1, false), (2, true), (3, true), (4, false)] {
            assert_eq!(
                set.fingerprint(SegmentId(id)) != edited.fingerprint(SegmentId(id)),
                changes,
                "segment {id}"
            );
        }
        // Without references, the fingerprint of the tree alone (what sets
        // built before references counted recorded).
        let Some(SegmentKind::Dynamic(tree)) = set.get(SegmentId(4)).map(|d| &d.kind) else {
            panic!("segment 4 is dynamic");
        };
        let tree = tree.to_json().to_string();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in tree.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        assert_eq!(set.fingerprint(SegmentId(4)), format!("{hash:016x}"));
    }

    #[test]
    fn a_change_reaches_the_segments_reading_what_it_touched() {
        let known = chain();
        let all_tags = dynamic(
            &known,
            5,
            json!({"type": "tag", "params": {"op": "has_none", "tags": ["x"]}}),
        );
        let mut definitions: Vec<SegmentDefinition> = known.iter().cloned().collect();
        definitions.push(all_tags);
        definitions.push(dynamic(
            &known,
            6,
            json!({"all": [
                {"type": "channel", "params": {"op": "in", "channels": ["sms"]}},
                {"type": "opt_in", "params": {"opted_in": true}}
            ]}),
        ));
        let set = SegmentSet::new(definitions);
        let cases: [&[&str]; 9] = [
            &[],
            &["*"],
            &["tags"],
            &["tag:vip"],
            &["tag:other"],
            &["channel"],
            &["opt_in", "segment:1"],
            &["segment:2", "attribute:plan"],
            &["field:name"],
        ];
        // 1 static, 2 ← member of 1, 3 ← member of 2, 4 tag `vip`,
        // 5 lacks tag `x`, 6 channel and opt-in.
        let expected: [&[i64]; 9] = [
            &[],
            &[1, 2, 3, 4, 5, 6],
            &[4, 5],
            &[4],
            &[],
            &[6],
            &[1, 2, 6],
            &[3],
            &[],
        ];
        for (case, expected) in cases.iter().zip(expected) {
            let changed: BTreeSet<&str> = case.iter().copied().collect();
            let expected: BTreeSet<SegmentId> = expected.iter().map(|i| SegmentId(*i)).collect();
            assert_eq!(set.reading(&changed), expected, "{case:?}");
        }
    }

    #[test]
    fn static_memberships_are_needed_only_through_a_static_segment() {
        let set = chain();
        assert!(set.reads_static(SegmentId(1)));
        assert!(set.reads_static(SegmentId(3)));
        assert!(!set.reads_static(SegmentId(4)));
        assert_eq!(set.reads(SegmentId(4)), &[DataRef::Tag("vip".into())]);
        assert_eq!(set.reads(SegmentId(1)), &[DataRef::Segment(SegmentId(1))]);
    }
}
