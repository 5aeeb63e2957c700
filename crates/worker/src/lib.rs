//! The materializer: keeps every segment's members in a Redis set, for the
//! campaign sender and for the API's counts and member lists.
//!
//! Jobs run on apalis with Redis as the job storage: a full **rebuild** of a
//! segment (stream the matching ids from SQL into a temporary set, then swap
//! it in atomically), **contacts changed** (re-evaluate, in memory, only the
//! segments that read what changed, and apply SADD/SREM guarded by contact
//! versions), and a scheduled **reconcile** (rebuild time-dependent segments,
//! compare every set with SQL and repair drift, and sweep the change log for
//! changes whose jobs were never enqueued).
//!
//! The Redis layout is a public contract: see [`keys`].

mod apply;
pub mod connection;
mod drift;
mod error;
pub mod jobs;
pub mod keys;
mod lease;
pub mod materializer;
pub mod metrics;
mod rebuild;
mod reconcile;
mod recovery;
mod scripts;
mod time;

pub use connection::SetsConnection;
pub use drift::FinishedPass;
pub use error::WorkerError;
pub use jobs::{Envelope, Job, JobQueue, WorkerSettings, run};
pub use materializer::{Materializer, MaterializerSettings, SegmentStatus, Snapshot};
pub use reconcile::{Drift, ReconcileReport};
