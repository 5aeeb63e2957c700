//! The condition engine.
//!
//! A *condition type* is a plugin ([`ConditionType`]): it names itself,
//! publishes a JSON Schema of its parameters, and turns validated parameters
//! into a [`Condition`] that has three meanings which must always agree — SQL
//! (for counting, listing and bulk materialisation, identical on SQLite and
//! PostgreSQL), in-memory (for re-evaluating one changed contact), and an
//! account of what contact data it reads and whether time alone can change it.
//!
//! A [`Registry`] is built at start-up. The built-in types register through
//! exactly the public [`RegistryBuilder::register`] a third-party crate uses.
//!
//! Condition trees ([`Tree`]) combine conditions with `all`, `any` and `not`.
//! This crate performs no I/O.

pub mod builtin;
mod plugin;
mod registry;
mod segment_set;
pub mod sql;
mod tree;

pub use plugin::{
    ALL_CHANGES, Backend, Condition, ConditionType, DataRef, EvalContext, ParseContext,
    SegmentEvaluator, SegmentSql, SqlContext, SqlError,
};
pub use registry::{Registry, RegistryBuilder, TypeInfo};
pub use segment_set::{Expansion, MAX_REFERENCE_DEPTH, SegmentDefinition, SegmentKind, SegmentSet};
pub use tree::{Explanation, Limits, Tree};

use std::collections::BTreeSet;

use segments_domain::{Contact, SegmentId};

/// One contact as conditions see it in memory: its stored data and the static
/// segments it was added to by hand.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactSnapshot {
    pub contact: Contact,
    pub static_segments: BTreeSet<SegmentId>,
}
