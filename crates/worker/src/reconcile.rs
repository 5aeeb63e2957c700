//! Reconciliation: the scheduled safety net. Each tick sweeps the change
//! log for changes whose jobs never ran (from where the last sweep ended),
//! builds sets that were never built, moves the members time alone moved
//! (`time`), removes the keys of deleted segments, and spends a
//! bounded slice on the drift check (`drift`), which compares every set
//! with SQL page by page over as many ticks as it takes.

use redis::AsyncCommands;
use segments_domain::{SegmentId, Timestamp, WorkspaceId};
use segments_store::ChangeSnapshot;

use crate::drift::{DriftBudget, FinishedPass};
use crate::lease::Lease;

use crate::{Materializer, WorkerError};

/// How one segment's set differs from SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub workspace: WorkspaceId,
    pub segment: SegmentId,
    /// Members SQL selects that the set lacks.
    pub missing: u64,
    /// Members the set holds that SQL does not select.
    pub extra: u64,
    /// The set has never been built.
    pub unbuilt: bool,
}

impl Drift {
    pub fn is_clean(&self) -> bool {
        self.missing == 0 && self.extra == 0 && !self.unbuilt
    }
}

/// What a reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Change-log entries swept.
    pub swept_changes: u64,
    /// Sets built because they never had been.
    pub built: u64,
    /// Sets rebuilt because they were built for an earlier definition.
    pub redefined: u64,
    /// Segments whose members time alone moves, brought up to date by
    /// re-deciding only the contacts time can have changed; and how many
    /// members moved.
    pub time_updates: u64,
    pub time_moved: u64,
    /// Segments rebuilt because time alone moves them and their conditions
    /// cannot say for whom.
    pub time_rebuilds: u64,
    /// Keys of deleted segments removed.
    pub stray_segments: u64,
    /// Segments the drift check went through.
    pub drift_checked: u64,
    /// Segments whose drift was repaired, and by how many members.
    pub repaired_segments: u64,
    pub repaired_members: u64,
    /// The drift check this reconciliation finished, if it finished one.
    pub drift_finished: Option<FinishedPass>,
}

impl Materializer {
    /// Every segment's drift, in every workspace.
    pub async fn verify(&self) -> Result<Vec<Drift>, WorkerError> {
        let mut out = Vec::new();
        for ws in self.store.workspace_ids().await? {
            for record in self.store.segment_records(ws).await? {
                out.push(self.drift(ws, record.id).await?);
            }
        }
        Ok(out)
    }

    /// Runs one whole reconciliation, drift check included, now.
    pub async fn reconcile(&self) -> Result<ReconcileReport, WorkerError> {
        self.reconcile_under(None, DriftBudget::Complete).await
    }

    /// Reconciles; under a lease, stops at the first step after losing it.
    async fn reconcile_under(
        &self,
        lease: Option<&Lease>,
        budget: DriftBudget,
    ) -> Result<ReconcileReport, WorkerError> {
        let check = || lease.map_or(Ok(()), Lease::check);
        // Sweep first: changes whose jobs were lost are applied before sets
        // are compared, so they are not counted as drift.
        let mut report = ReconcileReport {
            swept_changes: self.sweep().await?,
            ..ReconcileReport::default()
        };
        for ws in self.store.workspace_ids().await? {
            check()?;
            let catalog = self.catalog(ws).await?;
            let order = catalog.segments.dependency_order();
            let built = self.built_definitions(ws, &order).await?;
            for (segment, built) in order.into_iter().zip(built) {
                check()?;
                let Some(definition) = built else {
                    self.rebuild(ws, segment).await?;
                    report.built += 1;
                    continue;
                };
                if !catalog
                    .segments
                    .built_for_current(segment, Some(&definition))
                {
                    // Built for an earlier definition whose rebuild never
                    // ran (its job lost with the queue, say): readers go
                    // to SQL until it is rebuilt.
                    self.rebuild(ws, segment).await?;
                    report.redefined += 1;
                } else if catalog.segments.time_dependent(segment) {
                    match self.apply_time(ws, &catalog, segment).await? {
                        Some(moved) => {
                            report.time_updates += 1;
                            report.time_moved += moved;
                        }
                        None => {
                            self.rebuild(ws, segment).await?;
                            report.time_rebuilds += 1;
                        }
                    }
                }
            }
            report.stray_segments += self.remove_strays(ws, &catalog).await?;
            let mut conn = self.redis.clone();
            let _: () = conn
                .hset(
                    self.keys.stats(ws),
                    "last_reconcile_at",
                    Timestamp::now().get().to_rfc3339(),
                )
                .await?;
        }
        let drift = self.drift_pass(budget, lease).await?;
        report.drift_checked = drift.checked;
        report.repaired_segments = drift.repaired_segments;
        report.repaired_members = drift.repaired_members;
        report.drift_finished = drift.finished;
        tracing::info!(?report, "reconciled");
        Ok(report)
    }

    /// The lowest snapshot `xmin` among the builds of the workspace's sets
    /// (every change below it was seen by all of them), or `None` when no
    /// set is built.
    async fn oldest_build(&self, ws: WorkspaceId) -> Result<Option<i64>, WorkerError> {
        let catalog = self.catalog(ws).await?;
        let segments: Vec<SegmentId> = catalog.segments.iter().map(|d| d.id).collect();
        if segments.is_empty() {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        for segment in &segments {
            pipe.cmd("HMGET")
                .arg(self.keys.meta(ws, *segment))
                .arg(&["built_xmin", "built_seq"]);
        }
        let mut conn = self.redis.clone();
        let builds: Vec<(Option<i64>, Option<i64>)> = pipe.query_async(&mut conn).await?;
        // A meta from before snapshots were recorded saw every change
        // through `built_seq`.
        Ok(builds
            .into_iter()
            .filter_map(|(xmin, seq)| xmin.or(seq.map(|s| s + 1)))
            .min())
    }

    /// Removes the keys of segments that no longer exist.
    async fn remove_strays(
        &self,
        ws: WorkspaceId,
        catalog: &segments_store::Catalog,
    ) -> Result<u64, WorkerError> {
        let mut conn = self.redis.clone();
        let mut strays = Vec::new();
        // The pattern carries the workspace's hash tag: on a cluster the
        // scan goes to the node holding its slot.
        let pattern = self.keys.meta_pattern(ws);
        for key in conn.scan_slot(&pattern, &pattern).await? {
            if let Some(segment) = self.keys.segment_of_meta(ws, &key)
                && !catalog.segments.contains(segment)
            {
                strays.push(segment);
            }
        }
        let mut dropped = 0;
        for segment in &strays {
            let keys = vec![
                self.keys.members(ws, *segment),
                self.keys.meta(ws, *segment),
                self.keys.versions(ws, *segment),
            ];
            let done: Vec<i64> = self
                .forget
                .run_many(&mut conn, &[(keys, vec![catalog.version.to_string()])])
                .await?;
            dropped += done.iter().sum::<i64>().unsigned_abs();
        }
        Ok(dropped)
    }

    /// Applies every change of the log that the last sweep did not see and
    /// that has committed since: exactly the changes seen by a snapshot
    /// taken now and not by the one recorded last time, so a long
    /// transaction that commits late is swept the next time, however long
    /// it ran. Changes whose jobs ran are applied again, which changes
    /// nothing (decisions are idempotent and version-guarded).
    pub(crate) async fn sweep(&self) -> Result<u64, WorkerError> {
        let mut conn = self.redis.clone();
        let swept: Option<String> = conn.get(self.keys.swept()).await?;
        let now = self.store.current_snapshot().await?;
        // The first sweep has no earlier one to continue: it takes the
        // whole log — of what the sets' builds did not all see.
        let from = swept.as_deref().and_then(ChangeSnapshot::parse);
        let mut count = 0u64;
        for ws in self.store.workspace_ids().await? {
            // A change every build of the workspace saw is in every set
            // already; with no set built, the builds to come see them all.
            let Some(floor) = self.oldest_build(ws).await? else {
                continue;
            };
            let mut after = 0;
            loop {
                let changes = self
                    .store
                    .changes_unseen_since(from.as_ref(), Some(&now), Some(ws), floor, after, 10_000)
                    .await?;
                let Some(last) = changes.last() else { break };
                after = last.seq;
                let mut contacts: Vec<_> = changes.iter().map(|c| c.contact_id).collect();
                let mut changed: Vec<String> = changes
                    .iter()
                    .flat_map(|c| c.changed.iter().cloned())
                    .collect();
                contacts.sort_unstable();
                contacts.dedup();
                changed.sort();
                changed.dedup();
                self.contacts_changed(ws, &contacts, &changed, "sweep")
                    .await?;
                count += changes.len() as u64;
            }
        }
        self.record_swept(&now).await?;
        // The highest pruned version is recorded before the rows go: a drift
        // repair gives it to a contact left with no change in the log.
        let keep = self.settings.change_retention;
        if let Some(through) = self.store.prunable_through(&now, keep).await? {
            let _: Vec<i64> = self
                .raise
                .run_many(
                    &mut conn,
                    &[(vec![self.keys.pruned_through()], vec![through.to_string()])],
                )
                .await?;
            self.store.prune_changes(&now, keep, through).await?;
        }
        Ok(count)
    }

    /// Records that the change log has been swept through `snapshot`
    /// (never moving the marker back: see `MARK_SWEPT`).
    pub(crate) async fn record_swept(&self, snapshot: &ChangeSnapshot) -> Result<(), WorkerError> {
        let mut conn = self.redis.clone();
        let _: Vec<i64> = self
            .mark_swept
            .run_many(
                &mut conn,
                &[(
                    vec![self.keys.swept()],
                    vec![snapshot.to_text(), snapshot.xmax.to_string()],
                )],
            )
            .await?;
        Ok(())
    }

    /// Runs `reconcile` unless another process holds the reconciler's
    /// lease; holds it for `hold` at a time, renewed while it works.
    pub async fn reconcile_exclusively(
        &self,
        hold: std::time::Duration,
    ) -> Result<Option<ReconcileReport>, WorkerError> {
        let Some(lease) = Lease::acquire(&self.redis, self.keys.reconcile_lock(), hold).await?
        else {
            return Ok(None);
        };
        let started = std::time::Instant::now();
        let result = self
            .reconcile_under(Some(&lease), DriftBudget::Slice(self.settings.drift_slice))
            .await;
        match &result {
            Ok(report) => crate::metrics::reconciled(
                true,
                started.elapsed(),
                report.repaired_members,
                report.swept_changes,
            ),
            Err(_) => crate::metrics::reconciled(false, started.elapsed(), 0, 0),
        }
        lease.release(&self.redis).await?;
        result.map(Some)
    }
}
