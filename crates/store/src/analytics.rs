//! Membership queries — counts, searches, previews, member pages read from
//! SQL — on connections of their own, in bounded time, a bounded number at
//! a time per workspace.
//!
//! One such query can scan a workspace's whole contact table, and a tree of
//! segment references can make it long. If they shared the request pool,
//! ten slow searches of one workspace would take every connection and
//! another workspace's `GET /v1/contacts` would wait for one until it gave
//! up. So they run on their own connections (the *slots*), of which one
//! workspace holds at most `per_workspace` at once, and each query has a
//! deadline the database enforces: `statement_timeout` on PostgreSQL, a
//! progress handler on SQLite (which has no timeout of its own) that
//! interrupts the statement once the slot's deadline has passed. A slot is
//! a pool of one connection, so a deadline belongs to exactly one
//! connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{DatabaseConnection, DatabaseTransaction, DbBackend};
use segments_domain::WorkspaceId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{DatabaseSettings, StoreError};

/// Bounds of the membership queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsSettings {
    /// Connections for membership queries, apart from the request pool.
    pub connections: u32,
    /// How many of them one workspace may hold at once.
    pub per_workspace: u32,
    /// How long one query may run before the database abandons it.
    pub timeout: Duration,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        Self {
            connections: 4,
            per_workspace: 2,
            timeout: Duration::from_secs(10),
        }
    }
}

/// When the slot's current query must stop, in milliseconds since `EPOCH`;
/// 0 = no query running. Read by the SQLite progress handler.
#[derive(Debug, Default)]
pub(crate) struct Deadline(AtomicU64);

impl Deadline {
    fn set(&self, after: Duration) {
        let at = epoch().elapsed().saturating_add(after).as_millis().max(1);
        self.0
            .store(u64::try_from(at).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Makes whatever still runs on the slot stop at its next check.
    fn expire(&self) {
        self.0.store(1, Ordering::Relaxed);
    }

    /// Whether a query running now has outlived its deadline.
    pub(crate) fn passed(&self) -> bool {
        let at = self.0.load(Ordering::Relaxed);
        at != 0 && u128::from(at) <= epoch().elapsed().as_millis()
    }
}

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

#[derive(Debug)]
struct Slot {
    db: DatabaseConnection,
    deadline: Arc<Deadline>,
}

#[derive(Debug)]
pub(crate) struct Analytics {
    settings: AnalyticsSettings,
    backend: DbBackend,
    /// How long a query waits for its turn before it is refused.
    wait: Duration,
    slots: Arc<Mutex<Vec<Slot>>>,
    free: Arc<Semaphore>,
    workspaces: Mutex<HashMap<WorkspaceId, Arc<Semaphore>>>,
}

impl Analytics {
    /// Slots over the database of `settings`; their connections open when
    /// first used. An in-memory SQLite database exists once per pool, so
    /// there the slots share `pool` (and the deadline is not enforced).
    pub(crate) async fn new(
        settings: &DatabaseSettings,
        pool: &DatabaseConnection,
    ) -> Result<Self, StoreError> {
        let analytics = settings.analytics.clone();
        let count = analytics.connections.max(1);
        let mut slots = Vec::new();
        for _ in 0..count {
            let deadline = Arc::new(Deadline::default());
            let db = if settings.is_in_memory() {
                pool.clone()
            } else {
                crate::db::connect_slot(settings, deadline.clone()).await?
            };
            slots.push(Slot { db, deadline });
        }
        Ok(Self {
            backend: pool.get_database_backend(),
            wait: analytics.timeout,
            free: Arc::new(Semaphore::new(slots.len())),
            slots: Arc::new(Mutex::new(slots)),
            workspaces: Mutex::default(),
            settings: analytics,
        })
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// Waits for a slot for `workspace` and begins a read transaction on it
    /// whose statements stop after `timeout` (the configured one if `None`).
    pub(crate) async fn begin(
        &self,
        workspace: WorkspaceId,
        timeout: Option<Duration>,
    ) -> Result<Query, StoreError> {
        let timeout = timeout.unwrap_or(self.settings.timeout);
        let turn = {
            let mut map = self.workspaces.lock().map_err(|_| poisoned())?;
            map.retain(|_, s| Arc::strong_count(s) > 1);
            map.entry(workspace)
                .or_insert_with(|| {
                    Arc::new(Semaphore::new(self.settings.per_workspace.max(1) as usize))
                })
                .clone()
        };
        let turn = tokio::time::timeout(self.wait, turn.acquire_owned())
            .await
            .map_err(|_| StoreError::Busy { whole: false })?
            .map_err(|_| StoreError::Busy { whole: false })?;
        let permit = tokio::time::timeout(self.wait, self.free.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::Busy { whole: true })?
            .map_err(|_| StoreError::Busy { whole: true })?;
        let slot = self
            .slots
            .lock()
            .map_err(|_| poisoned())?
            .pop()
            .ok_or_else(poisoned)?;
        let mut lease = Lease {
            slot: Some(slot),
            slots: self.slots.clone(),
            _permit: permit,
            _turn: turn,
        };
        let slot = lease.slot()?;
        // Before BEGIN: the last query's lease left the slot's deadline
        // expired (to stop what it abandoned), and the progress handler
        // would interrupt this transaction's first statements too.
        slot.deadline.set(timeout);
        let txn = crate::transactions::begin(&slot.db, crate::transactions::Purpose::Plain).await?;
        if self.backend == DbBackend::Postgres {
            crate::plan_per_call(&txn, Some(timeout)).await?;
        }
        Ok(Query {
            txn: Some(txn),
            timeout,
            _lease: lease,
        })
    }
}

/// The slots' bookkeeping broke (a thread panicked holding it): no slot
/// count can be trusted, so queries fail rather than guess.
fn poisoned() -> StoreError {
    StoreError::Database(sea_orm::DbErr::Custom(
        "the membership query slots are unusable after a panic".into(),
    ))
}

/// A slot held by one query; handed back when dropped.
#[derive(Debug)]
struct Lease {
    slot: Option<Slot>,
    slots: Arc<Mutex<Vec<Slot>>>,
    // Released after the slot is back (fields drop after `drop` runs).
    _permit: OwnedSemaphorePermit,
    _turn: OwnedSemaphorePermit,
}

impl Lease {
    fn slot(&mut self) -> Result<&Slot, StoreError> {
        self.slot.as_ref().ok_or_else(poisoned)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            // A statement still running for a caller who left stops now.
            slot.deadline.expire();
            if let Ok(mut slots) = self.slots.lock() {
                slots.push(slot);
            }
        }
    }
}

/// A membership query's transaction on its slot.
#[derive(Debug)]
pub(crate) struct Query {
    // Dropped before the lease: the transaction's rollback is queued on
    // the slot's connection before another query can take it.
    txn: Option<DatabaseTransaction>,
    timeout: Duration,
    _lease: Lease,
}

impl Query {
    pub(crate) fn txn(&self) -> Result<&DatabaseTransaction, StoreError> {
        self.txn.as_ref().ok_or_else(poisoned)
    }

    /// Maps a statement's failure: a query stopped at its deadline is a
    /// timeout, whichever backend stopped it.
    pub(crate) fn failed(&self, err: sea_orm::DbErr) -> StoreError {
        match crate::error::sqlstate(&err).as_deref() {
            // query_canceled (statement_timeout), SQLITE_INTERRUPT.
            Some("57014" | "9") => StoreError::Timeout(self.timeout),
            _ => err.into(),
        }
    }

    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        if let Some(txn) = self.txn.take() {
            txn.commit().await?;
        }
        Ok(())
    }
}
