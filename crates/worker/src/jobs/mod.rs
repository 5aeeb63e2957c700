//! The job queue (apalis on Redis) and the worker loop.
//!
//! Why Redis as the job storage: Redis is already required for the sets, so
//! it adds no moving part; it serves every database backend the same way;
//! and it keeps queue polling off the primary database. What Redis-backed
//! jobs cannot promise alone — that a change committed while Redis is down
//! still arrives — the change log in the database provides, through the
//! reconciler's sweep.
//!
//! By concern: [`protocol`] is what a job says (the queue's wire format),
//! [`queue`] pushes jobs, [`coalescer`] merges the notices of writes that
//! arrive together into one job, [`runner`] runs the workers that take
//! them, and [`schedule`] is the reconciler's cron tick.

mod coalescer;
pub mod protocol;
pub mod queue;
pub mod runner;
mod schedule;

pub use protocol::{Envelope, Job};
pub use queue::{JobQueue, queue_config};
pub(crate) use runner::stopped;
pub use runner::{WorkerSettings, run};
