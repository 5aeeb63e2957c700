//! Redis seen from every worker process: an outage, and a Redis that came
//! back empty, are repaired as soon as Redis answers — not at the next
//! scheduled reconcile.
//!
//! - **Empty Redis** (restarted without persistence, a failover to an empty
//!   replica, a first start): the epoch marker (`<prefix>:epoch`) is gone
//!   with everything else. One process, holding the reconciler's lease,
//!   rebuilds every segment from SQL, records the sweep position the
//!   rebuilds start from, and writes the marker back.
//! - **Outage** (Redis unreachable, data kept): writes committed meanwhile
//!   are in the change log, their jobs were never enqueued. A process that
//!   saw Redis fail sweeps the change log, under the lease, as soon as
//!   Redis answers again.
//!
//! Both run again at the next check when the lease is busy or they fail.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use tokio::sync::watch;

use crate::lease::Lease;
use crate::{Materializer, WorkerError};

/// What one look at Redis found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Unreachable,
    Empty,
    /// The data is there; the server's run id (new at every start).
    Intact(String),
}

impl Materializer {
    async fn look(&self) -> Seen {
        let mut conn = self.redis.clone();
        let answer: Result<(bool, String), _> = redis::pipe()
            .exists(self.keys.epoch())
            .cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await;
        match answer {
            Ok((true, info)) => Seen::Intact(
                info.lines()
                    .find_map(|l| l.strip_prefix("run_id:"))
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            ),
            Ok((false, _)) => Seen::Empty,
            Err(_) => Seen::Unreachable,
        }
    }

    /// Rebuilds every segment of every workspace after Redis lost its data,
    /// unless another process holds the lease. Returns whether it ran.
    pub async fn restore(&self, hold: Duration) -> Result<bool, WorkerError> {
        let Some(lease) = Lease::acquire(&self.redis, self.keys.reconcile_lock(), hold).await?
        else {
            return Ok(false);
        };
        let started = std::time::Instant::now();
        // Every change this snapshot did not see is replayed by the rebuilds
        // or swept later; the sweep continues from here.
        let from = self.store.current_snapshot().await?;
        let mut segments = 0;
        for ws in self.store.workspace_ids().await? {
            let catalog = self.catalog(ws).await?;
            for segment in catalog.segments.dependency_order() {
                lease.check()?;
                self.rebuild(ws, segment).await?;
                segments += 1;
            }
        }
        self.record_swept(&from).await?;
        let mut conn = self.redis.clone();
        let _: () = conn
            .set(self.keys.epoch(), crate::materializer::token())
            .await?;
        lease.release(&self.redis).await?;
        tracing::warn!(segments, elapsed = ?started.elapsed(), "redis held none of this deployment's data: every segment rebuilt");
        Ok(true)
    }

    /// Sweeps the change log after an outage. Needs no lease: sweeps that
    /// overlap apply version-guarded decisions twice and the sweep marker
    /// only moves forward.
    pub async fn catch_up(&self) -> Result<u64, WorkerError> {
        let swept = self.sweep().await?;
        tracing::info!(changes = swept, "caught up with the change log");
        Ok(swept)
    }
}

/// Looks at Redis every `every` until `rx` says stop, and repairs what it
/// finds (see the module's comment).
pub(crate) async fn watch_redis(
    materializer: Arc<Materializer>,
    every: Duration,
    hold: Duration,
    rx: watch::Receiver<bool>,
) {
    let mut stop = std::pin::pin!(crate::jobs::stopped(rx));
    let mut outage = false;
    let mut server = None;
    loop {
        let seen = materializer.look().await;
        // A restart between two looks (its data reloaded from disk) is an
        // outage this process did not see: jobs pushed meanwhile were lost.
        if let Seen::Intact(run_id) = &seen {
            if server.as_ref().is_some_and(|s| s != run_id) {
                outage = true;
            }
            server = Some(run_id.clone());
        }
        let done = match seen {
            Seen::Unreachable => {
                if !outage {
                    tracing::warn!(
                        "redis does not answer: writes are kept in the change log until it does"
                    );
                }
                outage = true;
                Ok(false)
            }
            Seen::Empty => materializer.restore(hold).await,
            Seen::Intact(_) if outage => materializer.catch_up().await.map(|_| true),
            Seen::Intact(_) => Ok(false),
        };
        match done {
            Ok(true) => outage = false,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "redis recovery did not finish; trying again");
                outage = true;
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
