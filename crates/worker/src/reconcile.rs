//! Reconciliation: the scheduled safety net. Rebuilds the segments whose
//! truth moves with time, compares every other set with SQL and repairs
//! drift, removes the keys of deleted segments, and sweeps the change log
//! for changes whose jobs never ran.

use std::collections::{BTreeMap, HashSet};

use futures::StreamExt;
use redis::AsyncCommands;
use segments_conditions::SegmentSql;
use segments_domain::{SegmentId, Timestamp, WorkspaceId};
use segments_store::ChangeSnapshot;

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
    /// Segments rebuilt because time alone moves them.
    pub time_rebuilds: u64,
    /// Segments whose drift was repaired, and by how many members.
    pub repaired_segments: u64,
    pub repaired_members: u64,
    /// Keys of deleted segments removed.
    pub stray_segments: u64,
    /// Change-log entries swept.
    pub swept_changes: u64,
}

impl Materializer {
    /// Compares one segment's set with SQL, without changing anything.
    pub async fn drift(&self, ws: WorkspaceId, segment: SegmentId) -> Result<Drift, WorkerError> {
        let catalog = self.catalog(ws).await?;
        let ctx = catalog.sql_context(self.store.sql_backend(), Timestamp::now());
        let condition = catalog
            .segments
            .membership_sql(segment, &ctx)
            .map_err(|e| WorkerError::Sql(segment, e))?;
        let mut conn = self.redis.clone();
        let built: bool = conn.exists(self.keys.meta(ws, segment)).await?;
        let live: HashSet<i64> = conn.smembers(self.keys.members(ws, segment)).await?;
        let mut expected = HashSet::with_capacity(live.len());
        let (tx, mut batches) = futures::channel::mpsc::channel::<Vec<i64>>(1);
        let produce = self
            .store
            .send_ids_where(ws, condition, self.settings.build_batch, tx);
        let consume = async {
            while let Some(ids) = batches.next().await {
                expected.extend(ids);
            }
        };
        let (produced, ()) = tokio::join!(produce, consume);
        produced?;
        Ok(Drift {
            workspace: ws,
            segment,
            missing: expected.difference(&live).count() as u64,
            extra: live.difference(&expected).count() as u64,
            unbuilt: !built,
        })
    }

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

    /// Runs one reconciliation over every workspace.
    pub async fn reconcile(&self) -> Result<ReconcileReport, WorkerError> {
        self.reconcile_under(None).await
    }

    /// Reconciles; under a lease, stops at the first step after losing it.
    async fn reconcile_under(&self, lease: Option<&Lease>) -> Result<ReconcileReport, WorkerError> {
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
            let mut repaired_here = 0;
            for segment in catalog.segments.dependency_order() {
                check()?;
                if catalog.segments.time_dependent(segment) {
                    self.rebuild(ws, segment).await?;
                    report.time_rebuilds += 1;
                    continue;
                }
                let drift = self.drift(ws, segment).await?;
                if !drift.is_clean() {
                    let members = drift.missing + drift.extra;
                    tracing::warn!(workspace = %ws, segment = %segment, missing = drift.missing, extra = drift.extra, unbuilt = drift.unbuilt, "repairing drift");
                    self.rebuild(ws, segment).await?;
                    if !drift.unbuilt {
                        report.repaired_segments += 1;
                        report.repaired_members += members;
                        repaired_here += members;
                        let mut conn = self.redis.clone();
                        let _: i64 = conn
                            .hincr(self.keys.meta(ws, segment), "repairs", members)
                            .await?;
                    }
                }
            }
            report.stray_segments += self.remove_strays(ws, &catalog).await?;
            let mut conn = self.redis.clone();
            let _: () = redis::pipe()
                .hincr(self.keys.stats(ws), "repairs", repaired_here)
                .ignore()
                .hset(
                    self.keys.stats(ws),
                    "last_reconcile_at",
                    Timestamp::now().get().to_rfc3339(),
                )
                .ignore()
                .query_async(&mut conn)
                .await?;
        }
        tracing::info!(?report, "reconciled");
        Ok(report)
    }

    /// Removes the keys of segments that no longer exist.
    async fn remove_strays(
        &self,
        ws: WorkspaceId,
        catalog: &segments_store::Catalog,
    ) -> Result<u64, WorkerError> {
        let mut conn = self.redis.clone();
        let mut strays = Vec::new();
        {
            let mut keys = conn
                .scan_match::<_, String>(self.keys.meta_pattern(ws))
                .await?;
            while let Some(key) = keys.next().await {
                if let Some(segment) = key.ok().and_then(|k| self.keys.segment_of_meta(ws, &k))
                    && !catalog.segments.contains(segment)
                {
                    strays.push(segment);
                }
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
        // whole log.
        let from = swept.as_deref().and_then(ChangeSnapshot::parse);
        let mut after = 0;
        let mut count = 0u64;
        loop {
            let changes = self
                .store
                .changes_unseen(from.as_ref(), Some(&now), None, after, 10_000)
                .await?;
            let Some(last) = changes.last() else { break };
            after = last.seq;
            let mut by_workspace: BTreeMap<WorkspaceId, (Vec<_>, Vec<String>)> = BTreeMap::new();
            for change in &changes {
                let entry = by_workspace.entry(change.workspace_id).or_default();
                entry.0.push(change.contact_id);
                entry.1.extend(change.changed.iter().cloned());
            }
            for (ws, (mut contacts, mut changed)) in by_workspace {
                contacts.sort_unstable();
                contacts.dedup();
                changed.sort();
                changed.dedup();
                self.contacts_changed(ws, &contacts, &changed, "sweep")
                    .await?;
            }
            count += changes.len() as u64;
        }
        self.record_swept(&now).await?;
        self.store
            .prune_changes(&now, self.settings.change_retention)
            .await?;
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
        let result = self.reconcile_under(Some(&lease)).await;
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
