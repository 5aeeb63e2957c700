//! The worker's metrics, through the `metrics` facade: whichever recorder
//! the process installs (the binary installs a Prometheus one) receives
//! them, and without one they cost next to nothing.

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

pub const JOBS_ENQUEUED: &str = "segments_jobs_enqueued_total";
pub const JOBS_NOT_ENQUEUED: &str = "segments_jobs_enqueue_failed_total";
pub const JOBS_FINISHED: &str = "segments_jobs_total";
pub const JOB_RUN: &str = "segments_job_run_duration_seconds";
pub const JOB_LATENCY: &str = "segments_job_latency_seconds";
pub const QUEUE_DEPTH: &str = "segments_job_queue_depth";
pub const NOTICE_WAIT: &str = "segments_change_notice_wait_seconds";
pub const REBUILDS: &str = "segments_rebuilds_total";
pub const REBUILD_DURATION: &str = "segments_rebuild_duration_seconds";
pub const MEMBERS_CHANGED: &str = "segments_members_changed_total";
pub const RECONCILES: &str = "segments_reconciles_total";
pub const RECONCILE_DURATION: &str = "segments_reconcile_duration_seconds";
pub const RECONCILE_REPAIRS: &str = "segments_reconcile_repaired_members_total";
pub const CHANGES_SWEPT: &str = "segments_reconcile_swept_changes_total";

/// Registers help texts; call once after installing a recorder.
pub fn describe() {
    describe_counter!(JOBS_ENQUEUED, "Jobs pushed to the queue, by kind.");
    describe_counter!(
        JOBS_NOT_ENQUEUED,
        "Jobs that could not be pushed (Redis unreachable); the reconciler sweeps their changes."
    );
    describe_counter!(
        JOBS_FINISHED,
        "Jobs run, by kind and outcome (done, failed)."
    );
    describe_histogram!(
        JOB_RUN,
        Unit::Seconds,
        "Time a worker spent running a job, by kind."
    );
    describe_histogram!(
        JOB_LATENCY,
        Unit::Seconds,
        "Time from a job's enqueueing to the end of its run, by kind."
    );
    describe_histogram!(
        NOTICE_WAIT,
        Unit::Seconds,
        "Time from a contact write's notice to the push of the job carrying it, for the oldest notice of each job a process's coalescer pushes."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Jobs waiting or running, read from Redis at scrape time."
    );
    describe_counter!(
        REBUILDS,
        "Full rebuilds, by outcome (swapped, superseded, deleted)."
    );
    describe_histogram!(
        REBUILD_DURATION,
        Unit::Seconds,
        "Wall time of full rebuilds that swapped a set in."
    );
    describe_counter!(
        MEMBERS_CHANGED,
        "Contacts that entered or exited a materialized set through incremental updates, by change and cause."
    );
    describe_counter!(RECONCILES, "Reconcile passes, by outcome (done, failed).");
    describe_histogram!(
        RECONCILE_DURATION,
        Unit::Seconds,
        "Wall time of reconcile passes."
    );
    describe_counter!(
        RECONCILE_REPAIRS,
        "Members added or removed by the reconciler to repair drift."
    );
    describe_counter!(
        CHANGES_SWEPT,
        "Change-log entries applied by the reconciler's sweep."
    );
}

pub(crate) fn enqueued(kind: &'static str, ok: bool) {
    if ok {
        counter!(JOBS_ENQUEUED, "kind" => kind).increment(1);
    } else {
        counter!(JOBS_NOT_ENQUEUED, "kind" => kind).increment(1);
    }
}

pub(crate) fn job_finished(kind: &'static str, ok: bool, run: Duration, latency: Option<Duration>) {
    let outcome = if ok { "done" } else { "failed" };
    counter!(JOBS_FINISHED, "kind" => kind, "outcome" => outcome).increment(1);
    histogram!(JOB_RUN, "kind" => kind).record(run.as_secs_f64());
    if let Some(latency) = latency {
        histogram!(JOB_LATENCY, "kind" => kind).record(latency.as_secs_f64());
    }
}

pub(crate) fn notice_waited(wait: Duration) {
    histogram!(NOTICE_WAIT).record(wait.as_secs_f64());
}

pub(crate) fn queue_depth(depth: u64) {
    #[allow(clippy::cast_precision_loss)]
    gauge!(QUEUE_DEPTH).set(depth as f64);
}

pub(crate) fn rebuilt(outcome: &'static str, took: Option<Duration>) {
    counter!(REBUILDS, "outcome" => outcome).increment(1);
    if let Some(took) = took {
        histogram!(REBUILD_DURATION).record(took.as_secs_f64());
    }
}

pub(crate) fn members_changed(cause: &str, entered: u64, exited: u64) {
    // Causes are a closed set of our own names; anything else is bucketed so
    // the label cannot grow without bound.
    let cause: &'static str = match cause {
        "write" => "write",
        "sweep" => "sweep",
        "replay" => "replay",
        "repair" => "repair",
        _ => "other",
    };
    if entered > 0 {
        counter!(MEMBERS_CHANGED, "change" => "entered", "cause" => cause).increment(entered);
    }
    if exited > 0 {
        counter!(MEMBERS_CHANGED, "change" => "exited", "cause" => cause).increment(exited);
    }
}

pub(crate) fn reconciled(ok: bool, took: Duration, repaired: u64, swept: u64) {
    let outcome = if ok { "done" } else { "failed" };
    counter!(RECONCILES, "outcome" => outcome).increment(1);
    histogram!(RECONCILE_DURATION).record(took.as_secs_f64());
    counter!(RECONCILE_REPAIRS).increment(repaired);
    counter!(CHANGES_SWEPT).increment(swept);
}
