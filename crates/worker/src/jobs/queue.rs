//! Pushing jobs to the apalis queue on Redis.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_redis::{Config, RedisStorage};
use redis::aio::ConnectionManager;
use segments_domain::{ContactId, SegmentId, WorkspaceId};
use segments_store::ChangeStamp;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::mpsc;

use crate::WorkerError;

use super::coalescer::{Notice, coalesce, contacts_job};
use super::protocol::{Envelope, Job, now_ms};

/// Pushes jobs. Cheap to clone.
#[derive(Clone)]
pub struct JobQueue {
    /// When set, change notices go through a coalescer (see `coalescing`).
    pub(super) notices: Option<mpsc::UnboundedSender<Notice>>,
    pub(super) storage: RedisStorage<Envelope>,
    pub(super) conn: ConnectionManager,
    pub(super) config: Config,
    /// The pub/sub channel idle workers listen on.
    pub(super) wake_channel: String,
    pub(super) timeout: Duration,
    /// Jobs waiting, as last seen by a push: the coalescer lingers while
    /// workers are behind.
    pub(super) backlog: Arc<AtomicU64>,
    /// Set while a catch-up is owed: some job could not be enqueued.
    pub(super) owed: Arc<AtomicBool>,
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
    pub(super) async fn wake(&self) -> Result<(), WorkerError> {
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

    /// A batch of a bulk load (`segments import`): pushed as one job at
    /// once rather than coalesced, so the loader learns whether the queue
    /// took it (and can stop trying when Redis is away).
    pub async fn batch_written(
        &self,
        ws: WorkspaceId,
        contacts: &[ContactId],
        touched: &[String],
    ) -> Result<(), WorkerError> {
        if contacts.is_empty() {
            return Ok(());
        }
        self.push(contacts_job(
            ws,
            contacts.iter().map(|c| (*c, None)).collect(),
            touched.to_vec(),
        ))
        .await
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
