//! The worker processes' loop: apalis workers that take jobs, supervised
//! and restarted, and the wake-ups that make them prompt.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_core::backend::ext::poll_strategy::{PollWith, StreamStrategy};
use apalis_core::backend::factory::BackendFactory;
use apalis_cron::CronScheduler;
use apalis_redis::RedisStorage;
use apalis_redis::factory::{Pubsub, RedisStorageFactory};
use redis::aio::MultiplexedConnection;
use segments_domain::{ContactId, SegmentId, WorkspaceId};
use segments_store::ChangeStamp;
use std::collections::HashMap;

use tokio::sync::watch;

use crate::{Materializer, WorkerError};

use super::protocol::{Envelope, Job, now_ms};
use super::queue::{JobQueue, queue_config};
use super::schedule::tick;

async fn handle(
    envelope: Envelope,
    materializer: Data<Arc<Materializer>>,
) -> Result<(), BoxDynError> {
    let kind = envelope.job.kind();
    let started = std::time::Instant::now();
    let result = run_job(envelope.job, &materializer).await;
    // A clock skewed between enqueuer and worker can make the wait negative:
    // such a sample says nothing, so it is dropped.
    let latency = u64::try_from(now_ms() - envelope.enqueued_at_ms)
        .ok()
        .map(Duration::from_millis);
    crate::metrics::job_finished(kind, result.is_ok(), started.elapsed(), latency);
    result
}

async fn run_job(job: Job, materializer: &Materializer) -> Result<(), BoxDynError> {
    match job {
        Job::Rebuild {
            workspace_id,
            segment_id,
        } => {
            materializer
                .rebuild(WorkspaceId(workspace_id), SegmentId(segment_id))
                .await?;
        }
        Job::ContactsChanged {
            workspace_id,
            contact_ids,
            changed,
            stamps,
        } => {
            let ids: Vec<ContactId> = contact_ids.into_iter().map(ContactId).collect();
            // Stamps that do not line up with the contacts are ignored: the
            // worker then reads them all.
            let known: HashMap<ContactId, ChangeStamp> = if stamps.len() == ids.len() {
                ids.iter()
                    .zip(stamps)
                    .filter_map(|(c, v)| v.map(|[seq, xid]| (*c, ChangeStamp { seq, xid })))
                    .collect()
            } else {
                HashMap::new()
            };
            materializer
                .contacts_changed_at(WorkspaceId(workspace_id), &ids, &known, &changed, "write")
                .await?;
        }
        Job::RebuildReading {
            workspace_id,
            changed,
        } => {
            let ws = WorkspaceId(workspace_id);
            let catalog = materializer.catalog(ws).await?;
            for segment in crate::apply::affected(&catalog, &changed) {
                materializer.rebuild(ws, segment).await?;
            }
        }
        Job::CatchUp => {
            materializer.catch_up().await?;
        }
    }
    Ok(())
}

/// How a worker process runs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Jobs run at once by this process.
    pub concurrency: usize,
    /// Six-field cron expression (seconds first) of the reconciler.
    pub reconcile_schedule: String,
    /// How often a worker proves it is alive; a worker silent for three
    /// intervals is presumed dead and its jobs are given to others.
    pub heartbeat: Duration,
    /// How often a process checks for waiting jobs and wakes its workers
    /// (see `nudge`): the bound on how long a job whose wake-up was missed
    /// can wait.
    pub wake_interval: Duration,
    /// How often a process checks that Redis answers and still holds the
    /// deployment's data (see `recovery`): the longest an outage or an
    /// empty restart goes unrepaired.
    pub redis_check_interval: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            reconcile_schedule: "0 * * * * *".into(),
            heartbeat: Duration::from_secs(5),
            wake_interval: Duration::from_millis(100),
            redis_check_interval: Duration::from_secs(1),
        }
    }
}

/// A name unique to this process and start: apalis refuses a second live
/// worker of the same name.
fn worker_name(role: &str) -> String {
    format!(
        "segments-{role}-{}-{}",
        std::process::id(),
        crate::materializer::token()
    )
}

pub(crate) async fn stopped(mut rx: watch::Receiver<bool>) -> Result<(), std::io::Error> {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Runs job workers and the reconciler until `shutdown` completes. A worker
/// that dies (Redis went away) is restarted with backoff.
pub async fn run(
    materializer: Arc<Materializer>,
    settings: WorkerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let schedule = cron::Schedule::from_str(&settings.reconcile_schedule)
        .map_err(|e| WorkerError::Enqueue(format!("reconcile schedule: {e}")))?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    let nudge = nudge(materializer.clone(), settings.wake_interval, rx.clone());
    // The reconciler's lease: held for most of an interval, renewed while
    // its holder works.
    let hold = Duration::from_secs(50);
    let redis_watch = crate::recovery::watch_redis(
        materializer.clone(),
        settings.redis_check_interval,
        hold,
        rx.clone(),
    );
    let queue = materializer.keys.queue();
    let jobs = {
        let materializer = materializer.clone();
        let rx = rx.clone();
        let settings = settings.clone();
        supervise("jobs", rx.clone(), move || {
            let materializer = materializer.clone();
            let rx = rx.clone();
            let settings = settings.clone();
            let queue = queue.clone();
            async move {
                // A fresh pub/sub connection per start: after Redis restarts,
                // the old one is gone for good.
                let mut factory = RedisStorageFactory::new(materializer.resp3_client()?).await?;
                let backend: PollWith<
                    RedisStorage<Envelope, MultiplexedConnection>,
                    StreamStrategy<Pubsub>,
                > = factory.create_with_config(queue_config(&queue, settings.heartbeat))?;
                WorkerBuilder::new(worker_name("jobs"))
                    .backend(backend)
                    .data(materializer.clone())
                    .concurrency(settings.concurrency)
                    .build(handle)
                    .run_until(stopped(rx.clone()))
                    .await?;
                Ok::<(), BoxDynError>(())
            }
        })
    };
    let cron = {
        let materializer = materializer.clone();
        supervise("reconcile", rx.clone(), move || {
            let worker = WorkerBuilder::new(worker_name("reconcile"))
                .backend(CronScheduler::new(schedule.clone()))
                .data(materializer.clone())
                .data(hold)
                .build(tick);
            let stop = stopped(rx.clone());
            async move {
                worker.run_until(stop).await?;
                Ok::<(), BoxDynError>(())
            }
        })
    };
    tokio::join!(jobs, cron, nudge, redis_watch);
    Ok(())
}

/// Wakes this process's workers while jobs wait. apalis-redis workers poll
/// at start, at each heartbeat and when a wake-up is published; a retry
/// that falls due later or a job handed back from a dead worker gets no
/// wake-up, and under load some published wake-ups are missed (measured:
/// with a 5 s heartbeat, half the jobs waited over 0.5 s at 200 jobs/s).
/// Checking the queue every `wake_interval` bounds that wait.
///
/// Why wake-ups are missed, as apalis-core 1.0 reads: a wake-up that
/// arrives while a fetch is in flight is consumed by that poll, but the
/// fetch ran in Redis before the job was pushed and comes back empty, and
/// the worker then parks until the next wake-up. When every write went
/// through the queue (up to stop 20) that hit about 1% of writes at 500/s,
/// and the interval was 10 ms to keep the write-to-set tail short. Writes
/// now apply their own changes before answering; the queue carries bulk
/// and fallback work, rebuilds and retries, and with writes that only queue
/// (`redis.apply_before_answering = false`) 100 ms and even 1 s gave the
/// same p99 as 10 ms (9–11 ms up to 1,000 writes/s), while an idle worker
/// process at 10 ms sent ~900 Redis commands a second. 100 ms bounds a
/// missed wake-up's wait at a tenth of that load (BENCHMARKS.md). Each
/// check is one pipelined round trip to Redis.
async fn nudge(materializer: Arc<Materializer>, every: Duration, rx: watch::Receiver<bool>) {
    let queue = JobQueue::new(
        materializer.queue_redis(),
        &materializer.keys.queue(),
        every,
        Duration::from_secs(1),
    );
    let mut stop = std::pin::pin!(stopped(rx));
    loop {
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
        let woken = match queue.depth().await {
            Ok(0) => Ok(()),
            Ok(_) => queue.wake().await,
            Err(e) => Err(e),
        };
        if let Err(e) = woken {
            tracing::debug!(error = %e, "queue not checked");
        }
    }
}

async fn supervise<F, Fut>(role: &str, rx: watch::Receiver<bool>, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), BoxDynError>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match make().await {
            Ok(()) if *rx.borrow() => return,
            Ok(()) => tracing::warn!(role, "worker stopped; restarting"),
            Err(e) => tracing::warn!(role, error = %e, "worker failed; restarting"),
        }
        if *rx.borrow() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
