//! The job queue (apalis on Redis) and the worker loop.
//!
//! Why Redis as the job storage: Redis is already required for the sets, so
//! it adds no moving part; it serves every database backend the same way;
//! and it keeps queue polling off the primary database. What Redis-backed
//! jobs cannot promise alone — that a change committed while Redis is down
//! still arrives — the change log in the database provides, through the
//! reconciler's sweep.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_core::backend::ext::poll_strategy::{PollWith, StreamStrategy};
use apalis_core::backend::factory::BackendFactory;
use apalis_cron::{CronScheduler, Tick};
use apalis_redis::factory::{Pubsub, RedisStorageFactory};
use apalis_redis::{Config, RedisStorage};
use redis::aio::ConnectionManager;
use redis::aio::MultiplexedConnection;
use segments_domain::{ContactId, SegmentId, WorkspaceId};
use segments_store::ChangeStamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};

use crate::{Materializer, WorkerError};

/// A unit of materialization work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Rebuild one segment's set from SQL.
    Rebuild { workspace_id: i64, segment_id: i64 },
    /// Contacts were written; `changed` holds the change keys of what.
    ContactsChanged {
        workspace_id: i64,
        contact_ids: Vec<i64>,
        changed: Vec<String>,
        /// Beside `contact_ids`, when the writer knew them: each contact's
        /// version and writing transaction as of its write (`[seq, xid]`).
        /// Missing or `null`: the worker reads it. (Jobs queued before
        /// stamps carried an older `versions` field, which is ignored.)
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        stamps: Vec<Option<[i64; 2]>>,
    },
    /// Rebuild every segment of a workspace that reads any of `changed`
    /// (after a tag rename or deletion touched many contacts at once).
    RebuildReading {
        workspace_id: i64,
        changed: Vec<String>,
    },
    /// Sweep the change log: a process could not enqueue some jobs (Redis
    /// was away) and pushes this once Redis answers again.
    CatchUp,
}

impl Job {
    /// The job's kind, as named in metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rebuild { .. } => "rebuild",
            Self::ContactsChanged { .. } => "contacts_changed",
            Self::RebuildReading { .. } => "rebuild_reading",
            Self::CatchUp => "catch_up",
        }
    }
}

/// A job as stored in the queue: the job and when it was enqueued, so a
/// worker can tell how long it waited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Milliseconds since the Unix epoch, by the enqueuer's clock.
    pub enqueued_at_ms: i64,
    #[serde(flatten)]
    pub job: Job,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Pushes jobs. Cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    /// When set, change notices go through a coalescer (see `coalescing`).
    notices: Option<mpsc::UnboundedSender<Notice>>,
    storage: RedisStorage<Envelope>,
    conn: ConnectionManager,
    config: Config,
    /// The pub/sub channel idle workers listen on.
    wake_channel: String,
    timeout: Duration,
    /// Jobs waiting, as last seen by a push: the coalescer lingers while
    /// workers are behind.
    backlog: Arc<AtomicU64>,
    /// Set while a catch-up is owed: some job could not be enqueued.
    owed: Arc<AtomicBool>,
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobQueue").finish()
    }
}

/// How workers poll and notice each other's deaths: the apalis-redis
/// settings of the queue named `queue`.
pub fn queue_config(queue: &str, heartbeat: Duration) -> Config {
    Config::default()
        .queue(queue)
        .persist_results(true)
        .heartbeat_interval(heartbeat)
        .missed_heartbeats(3)
        .batch_size(16)
}

impl JobQueue {
    /// `timeout` bounds each push: a caller on a request path must not hang
    /// on a Redis that does not answer.
    pub fn new(
        conn: ConnectionManager,
        queue: &str,
        heartbeat: Duration,
        timeout: Duration,
    ) -> Self {
        let config = queue_config(queue, heartbeat);
        Self {
            notices: None,
            storage: RedisStorage::new(conn.clone()).with_config(config.clone()),
            conn,
            config,
            wake_channel: format!("tasks:{queue}:active:available"),
            timeout,
            backlog: Arc::new(AtomicU64::new(0)),
            owed: Arc::new(AtomicBool::new(false)),
        }
    }

    pub async fn push(&self, job: Job) -> Result<(), WorkerError> {
        self.push_within(job, self.timeout).await
    }

    /// Pushes a job, waiting up to `timeout` for Redis (an explicit request
    /// such as a rebuild, which answers 503 when it cannot enqueue, affords
    /// longer than the bound on a write's best-effort notice).
    pub async fn push_within(&self, job: Job, timeout: Duration) -> Result<(), WorkerError> {
        let kind = job.kind();
        let result = self.push_envelope(
            Envelope {
                enqueued_at_ms: now_ms(),
                job,
            },
            timeout,
        );
        let result = result.await;
        crate::metrics::enqueued(kind, result.is_ok());
        result
    }

    /// Jobs waiting or running, as Redis holds them now; also published as
    /// the queue-depth gauge.
    pub async fn depth(&self) -> Result<u64, WorkerError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        self.read_depth(&mut pipe);
        let read = pipe.query_async::<(u64, u64)>(&mut conn);
        let (scheduled, active) = tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| WorkerError::RedisTimeout)??;
        let depth = scheduled + active;
        crate::metrics::queue_depth(depth);
        Ok(depth)
    }

    /// Publishes the wake-up idle workers listen for.
    async fn wake(&self) -> Result<(), WorkerError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&self.wake_channel)
            .arg("1")
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Adds the reads of the queue's depth — jobs scheduled (due or not)
    /// and jobs ready — to `pipe`; they answer `(u64, u64)`.
    fn read_depth<'p>(&self, pipe: &'p mut redis::Pipeline) -> &'p mut redis::Pipeline {
        pipe.zcard(self.config.scheduled_jobs_set())
            .llen(self.config.active_jobs_list())
    }

    async fn push_envelope(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> Result<(), WorkerError> {
        let mut storage = self.storage.clone();
        let mut conn = self.conn.clone();
        let push = async {
            storage
                .push(envelope)
                .await
                .map_err(|e| WorkerError::Enqueue(e.to_string()))?;
            // apalis-redis 1.0 files every new task under "scheduled (now)"
            // and publishes no wake-up for it, so idle workers would only
            // notice at their next heartbeat. Publish the wake-up they listen
            // for ourselves.
            // The queue's depth rides along, for the coalescer.
            let mut pipe = redis::pipe();
            pipe.cmd("PUBLISH")
                .arg(&self.wake_channel)
                .arg("1")
                .ignore();
            self.read_depth(&mut pipe);
            let (scheduled, active): (u64, u64) = pipe.query_async(&mut conn).await?;
            self.backlog.store(scheduled + active, Ordering::Relaxed);
            Ok::<(), WorkerError>(())
        };
        match tokio::time::timeout(timeout, push).await {
            Ok(result) => result,
            Err(_) => Err(WorkerError::RedisTimeout),
        }
    }

    /// Pushes a job, logging (not failing) when it cannot be enqueued: the
    /// write it announces is in the change log, and the reconciler's sweep
    /// will apply it.
    pub async fn push_or_log(&self, job: Job) {
        tracing::debug!(?job, "enqueueing");
        if let Err(e) = self.push(job).await {
            tracing::warn!(error = %e, "job not enqueued; a catch-up sweep will apply the change from the change log once Redis answers");
            self.owe_catch_up();
        }
    }

    /// Remembers that a job was lost and, once, starts pushing a `CatchUp`
    /// until Redis takes it: however short the outage, and even if no other
    /// write follows, the change log is swept as soon as Redis is back.
    fn owe_catch_up(&self) {
        if self.owed.swap(true, Ordering::AcqRel) {
            return;
        }
        let queue = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if queue.push(Job::CatchUp).await.is_ok() {
                    queue.owed.store(false, Ordering::Release);
                    tracing::info!("catch-up sweep enqueued");
                    return;
                }
            }
        });
    }

    /// Routes change notices through a background task that merges those
    /// arriving together into one job per workspace. Under load, a worker
    /// then loads many contacts with one set of queries instead of a set
    /// per write; when idle, each notice leaves alone, at once.
    ///
    /// A notice accepted here and lost with the process before it was
    /// pushed is still in the change log: the reconciler sweeps it.
    pub fn coalescing(mut self) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(coalesce(self.clone(), rx));
        self.notices = Some(tx);
        self
    }

    pub async fn contacts_changed(
        &self,
        ws: WorkspaceId,
        contacts: &[ContactId],
        changed: Vec<String>,
    ) {
        self.announce(ws, contacts.iter().map(|c| (*c, None)).collect(), changed)
            .await;
    }

    /// One contact's write, whose change stamp the writer knows: the job
    /// carries it, sparing the worker a read.
    pub async fn contact_changed(
        &self,
        ws: WorkspaceId,
        contact: ContactId,
        version: ChangeStamp,
        changed: Vec<String>,
    ) {
        self.announce(ws, vec![(contact, Some(version))], changed)
            .await;
    }

    async fn announce(
        &self,
        ws: WorkspaceId,
        contacts: Vec<(ContactId, Option<ChangeStamp>)>,
        changed: Vec<String>,
    ) {
        if contacts.is_empty() {
            return;
        }
        let notice = Notice {
            workspace: ws,
            contacts,
            changed,
            at: tokio::time::Instant::now(),
        };
        let notice = match &self.notices {
            Some(tx) => match tx.send(notice) {
                Ok(()) => return,
                Err(mpsc::error::SendError(notice)) => notice,
            },
            None => notice,
        };
        self.push_or_log(contacts_job(
            notice.workspace,
            notice.contacts,
            notice.changed,
        ))
        .await;
    }

    pub async fn rebuild(&self, ws: WorkspaceId, segment: SegmentId) {
        self.push_or_log(Job::Rebuild {
            workspace_id: ws.0,
            segment_id: segment.0,
        })
        .await;
    }
}

/// A write's announcement, before it becomes a job.
#[derive(Debug)]
struct Notice {
    workspace: WorkspaceId,
    /// Each contact with its version, when the writer knew it.
    contacts: Vec<(ContactId, Option<ChangeStamp>)>,
    changed: Vec<String>,
    /// When the write announced it.
    at: tokio::time::Instant,
}

/// The job announcing `contacts`; versions ride along only when some are
/// known.
fn contacts_job(
    ws: WorkspaceId,
    contacts: Vec<(ContactId, Option<ChangeStamp>)>,
    changed: Vec<String>,
) -> Job {
    let stamps = if contacts.iter().any(|(_, v)| v.is_some()) {
        contacts
            .iter()
            .map(|(_, v)| v.map(|s| [s.seq, s.xid]))
            .collect()
    } else {
        Vec::new()
    };
    Job::ContactsChanged {
        workspace_id: ws.0,
        contact_ids: contacts.into_iter().map(|(c, _)| c.0).collect(),
        changed,
        stamps,
    }
}

/// Merges a version into what is known of a contact's: the newest of those
/// known, unless some write of it came without one. Then none is carried
/// and the worker reads the contact's version itself — applying under an
/// older version than the state read could see that state refused and lost.
fn merge_version(
    known: Option<Option<ChangeStamp>>,
    new: Option<ChangeStamp>,
) -> Option<ChangeStamp> {
    match (known, new) {
        (None, new) => new,
        // One contact's sequence numbers follow commit order.
        (Some(Some(a)), Some(b)) => Some(a.max(b)),
        (Some(_), _) => None,
    }
}

/// Most contacts merged into one job.
const MAX_COALESCED: usize = 1_000;

/// Jobs waiting beyond which the coalescer lingers before pushing.
const BACKLOG: u64 = 4;

/// The longest the coalescer lingers.
const MAX_LINGER: Duration = Duration::from_millis(50);

/// The least time between two pushes of one coalescer: at most two hundred
/// jobs a second from one API process, however fast writes come. (10 ms
/// tripled the median at 100 writes/s, where writes come 10 ms apart.)
const PACE: Duration = Duration::from_millis(5);

/// How long the coalescer waits before its next push, `since_last` after
/// the previous one began, with `backlog` jobs waiting.
///
/// Pacing bounds the job rate before the workers fall behind, not after:
/// the queue's depth does not count the jobs a worker has already fetched
/// and holds, so it rises only once a backlog exists, and a burst of writes
/// from idle (measured: 500/s) had queued hundreds of one-contact jobs by
/// then, which took seconds to drain. A write after a quiet spell of at
/// least `PACE` waits for nothing.
fn wait_before_push(since_last: Option<Duration>, backlog: u64) -> Duration {
    let pace = since_last.map_or(Duration::ZERO, |d| PACE.saturating_sub(d));
    let linger = if backlog > BACKLOG {
        Duration::from_millis(2 * backlog).min(MAX_LINGER)
    } else {
        Duration::ZERO
    };
    pace.max(linger)
}

/// One workspace's merged notices: each contact with its version, and the
/// change keys of them all.
type Merged = (BTreeMap<ContactId, Option<ChangeStamp>>, BTreeSet<String>);

async fn coalesce(queue: JobQueue, mut rx: mpsc::UnboundedReceiver<Notice>) {
    let mut last_push: Option<tokio::time::Instant> = None;
    while let Some(first) = rx.recv().await {
        // Workers that are behind gain nothing from one more small job: each
        // costs a fetch, a catalog check, a load and an acknowledgement, for
        // one contact. Waiting a little lets notices pile up into one job,
        // which loads and applies them all at once — throughput grows with
        // the load instead of the queue. When workers keep up, nothing waits.
        let backlog = queue.backlog.load(Ordering::Relaxed);
        let wait = wait_before_push(last_push.map(|at| at.elapsed()), backlog);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        last_push = Some(tokio::time::Instant::now());
        let oldest = first.at;
        let mut merged: BTreeMap<WorkspaceId, Merged> = BTreeMap::new();
        let mut count = 0;
        let mut next = Some(first);
        while let Some(notice) = next {
            count += notice.contacts.len();
            let entry = merged.entry(notice.workspace).or_default();
            for (contact, version) in notice.contacts {
                let known = entry.0.get(&contact).copied();
                entry.0.insert(contact, merge_version(known, version));
            }
            entry.1.extend(notice.changed);
            // Take what has already arrived; never wait for more.
            next = if count < MAX_COALESCED {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        for (ws, (contacts, changed)) in merged {
            queue
                .push_or_log(contacts_job(
                    ws,
                    contacts.into_iter().collect(),
                    changed.into_iter().collect(),
                ))
                .await;
        }
        crate::metrics::notice_waited(oldest.elapsed());
    }
}

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

async fn tick(
    _tick: Tick,
    materializer: Data<Arc<Materializer>>,
    hold: Data<Duration>,
) -> Result<(), BoxDynError> {
    match materializer.reconcile_exclusively(*hold).await? {
        None => tracing::debug!("another worker is reconciling"),
        Some(_) => vacuum(&materializer).await,
    }
    Ok(())
}

async fn vacuum(materializer: &Materializer) {
    match materializer.vacuum_jobs().await {
        Ok(n) => tracing::debug!(jobs = n, "vacuumed finished jobs"),
        Err(e) => tracing::warn!(error = %e, "vacuuming finished jobs failed"),
    }
}

impl Materializer {
    /// Deletes finished jobs' data, metadata and ids: apalis-redis keeps them
    /// for ever otherwise. The reconcile tick runs it under its lock.
    pub async fn vacuum_jobs(&self) -> Result<usize, WorkerError> {
        use apalis_core::backend::Vacuum;
        let config = queue_config(&self.keys.queue(), Duration::from_secs(5));
        let done = config.done_jobs_set();
        let mut storage = RedisStorage::<Envelope>::new(self.redis()).with_config(config);
        let vacuumed = storage
            .vacuum()
            .await
            .map_err(|e| WorkerError::Enqueue(e.to_string()))?;
        let mut conn = self.redis();
        let _: i64 = redis::cmd("DEL").arg(done).query_async(&mut conn).await?;
        Ok(vacuumed)
    }
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
            wake_interval: Duration::from_millis(10),
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
/// the worker then parks until the next wake-up. At 500 writes/s that hit
/// about 1% of writes, so the interval is the tail of the write-to-set
/// latency: 50 ms gave p99 40–48 ms, 10 ms gives 13–19 ms (BENCHMARKS.md).
/// Each check is one pipelined round trip to Redis.
async fn nudge(materializer: Arc<Materializer>, every: Duration, rx: watch::Receiver<bool>) {
    let queue = JobQueue::new(
        materializer.redis(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merged_version_is_the_newest_known_unless_one_write_came_without() {
        let v = |seq| {
            Some(ChangeStamp {
                seq,
                xid: 100 - seq,
            })
        };
        assert_eq!(merge_version(None, v(4)), v(4));
        assert_eq!(merge_version(None, None), None);
        assert_eq!(merge_version(Some(v(4)), v(9)), v(9));
        assert_eq!(merge_version(Some(v(9)), v(4)), v(9));
        assert_eq!(merge_version(Some(None), v(9)), None);
        assert_eq!(merge_version(Some(v(9)), None), None);
    }

    #[test]
    fn pushes_are_paced_and_linger_while_workers_are_behind() {
        let ms = Duration::from_millis;
        // Idle: the first write and one after a quiet spell go at once.
        assert_eq!(wait_before_push(None, 0), Duration::ZERO);
        assert_eq!(wait_before_push(Some(PACE), 0), Duration::ZERO);
        assert_eq!(wait_before_push(Some(ms(500)), 0), Duration::ZERO);
        // Right after a push, the next waits out the pace.
        assert_eq!(wait_before_push(Some(ms(3)), 0), PACE - ms(3));
        // Behind: the longer of pace and linger, the linger capped.
        assert_eq!(wait_before_push(Some(ms(9)), 10), ms(20));
        assert_eq!(wait_before_push(None, 1_000), MAX_LINGER);
        assert_eq!(wait_before_push(Some(ms(1)), BACKLOG), PACE - ms(1));
    }

    #[test]
    fn versions_ride_along_only_when_some_are_known() {
        let ws = WorkspaceId(1);
        let unknown = contacts_job(ws, vec![(ContactId(1), None)], vec!["tags".into()]);
        let Job::ContactsChanged { stamps, .. } = &unknown else {
            panic!("not a contacts job: {unknown:?}");
        };
        assert!(stamps.is_empty());
        let json = serde_json::to_value(&unknown).unwrap_or_else(|e| panic!("{e}"));
        assert!(json.get("stamps").is_none(), "{json}");

        let known = contacts_job(
            ws,
            vec![
                (ContactId(1), Some(ChangeStamp { seq: 7, xid: 70 })),
                (ContactId(2), None),
            ],
            vec!["tags".into()],
        );
        let Job::ContactsChanged {
            contact_ids,
            stamps,
            ..
        } = &known
        else {
            panic!("not a contacts job: {known:?}");
        };
        assert_eq!(contact_ids, &[1, 2]);
        assert_eq!(stamps, &[Some([7, 70]), None]);
    }

    #[test]
    fn jobs_queued_before_versions_existed_still_read() {
        let old = r#"{"enqueued_at_ms": 1, "kind": "contacts_changed", "workspace_id": 3,
                      "contact_ids": [5, 6], "changed": ["tags"], "versions": [4, null]}"#;
        let envelope: Envelope = serde_json::from_str(old).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            envelope.job,
            Job::ContactsChanged {
                workspace_id: 3,
                contact_ids: vec![5, 6],
                changed: vec!["tags".into()],
                stamps: Vec::new(),
            }
        );
        let carried = contacts_job(
            WorkspaceId(3),
            vec![(ContactId(5), Some(ChangeStamp { seq: 11, xid: 12 }))],
            vec!["tags".into()],
        );
        let envelope = Envelope {
            enqueued_at_ms: 1,
            job: carried.clone(),
        };
        let back: Envelope = serde_json::from_str(
            &serde_json::to_string(&envelope).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.job, carried);
    }
}
