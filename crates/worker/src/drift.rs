//! The drift check: compares each segment's set with SQL and repairs what
//! differs, a page at a time, so that its cost follows the sets and not
//! the workspace, no Redis command it sends holds Redis for more than a
//! page, and it can stop anywhere and resume.
//!
//! For one segment it goes two ways. SQL → set: the members SQL selects,
//! streamed by one statement `batch` ids at a time, each page checked with
//! one SMISMEMBER; the ones the set lacks are *missing*. Set → SQL: only when
//! the set holds more members than the first way confirmed (SCARD), the
//! set is scanned (SSCAN) and each page's members asked of SQL; the ones
//! SQL does not select are *extra*.
//!
//! A disagreement seen on the way may be a write in flight, not drift. So
//! each is decided again from one snapshot that gives the contact's
//! membership *and* its version, and repaired by `REPAIR`, which lands only
//! if the set is still the build the check started from and no decision
//! newer than that version was applied since: a write that commits during
//! the check always has a higher version (one contact's versions follow
//! commit order), so a repair never undoes it.

use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::AsyncCommands;
use segments_conditions::sql::SqlExpr as Expr;
use segments_domain::{SegmentId, Timestamp, WorkspaceId};
use segments_store::MembershipTruth;
use serde::{Deserialize, Serialize};

use crate::lease::Lease;
use crate::{Materializer, WorkerError};

/// Decisions sent per `REPAIR` invocation, so that one script stays short.
const REPAIRS_PER_SCRIPT: usize = 500;

/// How far one segment's check has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SegmentCursor {
    /// How many of SQL's members the set holds (repaired ones included).
    confirmed: u64,
    /// The set's own scan, once SQL's side is done: its SSCAN cursor.
    scan: Option<u64>,
    /// Members repaired so far.
    repaired: u64,
}

/// Whether a check repairs what it finds or only counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Report,
    Repair,
}

/// Where one segment's check stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Checked through.
    Done,
    /// Out of time: resume from the cursor.
    Paused(SegmentCursor),
    /// A build swapped in meanwhile: the set is newer than the check.
    Rebuilt,
}

#[derive(Debug, Clone, Copy, Default)]
struct Found {
    missing: u64,
    extra: u64,
}

/// One segment's check.
struct Check<'a> {
    ws: WorkspaceId,
    segment: SegmentId,
    condition: &'a Expr,
    /// The build the check compares with (`build_identity`).
    identity: &'a str,
    mode: Mode,
    deadline: Option<Instant>,
}

/// A pass over every segment of every workspace, saved in Redis as it goes
/// (`Keys::drift`), so that a pass spread over many reconciler ticks, or
/// interrupted, resumes where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pass {
    started_at_ms: i64,
    workspace: i64,
    segment: i64,
    cursor: SegmentCursor,
    /// Segments checked through, and members repaired, so far.
    checked: u64,
    repaired_segments: u64,
    repaired_members: u64,
}

/// The last pass that finished.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedPass {
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub checked: u64,
    pub repaired_segments: u64,
    pub repaired_members: u64,
}

/// How long a reconciliation may spend on the drift check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DriftBudget {
    /// A scheduled tick: continue the pass in progress, or start one when
    /// the last finished long enough ago, and stop after this long.
    Slice(Duration),
    /// On request: a whole pass, now.
    Complete,
}

/// What one reconciliation did of the drift check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DriftProgress {
    pub checked: u64,
    pub repaired_segments: u64,
    pub repaired_members: u64,
    /// The pass it worked on, once finished.
    pub finished: Option<FinishedPass>,
}

/// Plain structs of numbers: serializing them cannot fail.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn now_ms() -> i64 {
    Timestamp::now().get().timestamp_millis()
}

impl Materializer {
    /// What identifies the build a set holds, or `None` when it has never
    /// been built; `REPAIR` composes the same fields the same way.
    pub async fn build_identity(
        &self,
        ws: WorkspaceId,
        segment: SegmentId,
    ) -> Result<Option<String>, WorkerError> {
        let mut conn = self.redis.clone();
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.meta(ws, segment))
            .arg(&[
                "built_catalog",
                "built_xmin",
                "built_xmax",
                "built_seq",
                "built_at",
            ])
            .query_async(&mut conn)
            .await?;
        if fields.get(4).is_none_or(Option::is_none) {
            return Ok(None);
        }
        let parts: Vec<&str> = fields.iter().map(|f| f.as_deref().unwrap_or("")).collect();
        Ok(Some(parts.join("/")))
    }

    /// Compares one segment's set with SQL, without changing anything.
    pub async fn drift(
        &self,
        ws: WorkspaceId,
        segment: SegmentId,
    ) -> Result<crate::Drift, WorkerError> {
        self.check_whole(ws, segment, Mode::Report).await
    }

    /// Compares one segment's set with SQL and repairs what differs, there
    /// and then: what the drift check does to each segment, alone. Returns
    /// what it repaired.
    pub async fn repair(
        &self,
        ws: WorkspaceId,
        segment: SegmentId,
    ) -> Result<crate::Drift, WorkerError> {
        self.check_whole(ws, segment, Mode::Repair).await
    }

    async fn check_whole(
        &self,
        ws: WorkspaceId,
        segment: SegmentId,
        mode: Mode,
    ) -> Result<crate::Drift, WorkerError> {
        let mut drift = crate::Drift {
            workspace: ws,
            segment,
            missing: 0,
            extra: 0,
            unbuilt: false,
        };
        let Some(identity) = self.build_identity(ws, segment).await? else {
            drift.unbuilt = true;
            return Ok(drift);
        };
        let catalog = self.catalog(ws).await?;
        let ctx = catalog.sql_context(self.store.sql_backend(), Timestamp::now());
        let condition =
            segments_conditions::SegmentSql::membership_sql(&catalog.segments, segment, &ctx)
                .map_err(|e| WorkerError::Sql(segment, e))?;
        let check = Check {
            ws,
            segment,
            condition: &condition,
            identity: &identity,
            mode,
            deadline: None,
        };
        let (_, found) = self.check(&check, SegmentCursor::default()).await?;
        drift.missing = found.missing;
        drift.extra = found.extra;
        Ok(drift)
    }

    /// Runs one segment's check from `cursor`.
    async fn check(
        &self,
        check: &Check<'_>,
        mut cursor: SegmentCursor,
    ) -> Result<(Stop, Found), WorkerError> {
        let batch = self.settings.drift_batch.max(1);
        let members = self.keys.members(check.ws, check.segment);
        let mut conn = self.redis.clone();
        let mut found = Found::default();
        let out_of_time = || check.deadline.is_some_and(|d| Instant::now() >= d);
        // SQL's side is one statement streamed a page at a time (a rebuild's
        // read, at a rebuild's cost): paging by id instead re-ran the scan
        // for every page, a hundred times a rebuild's cost on large sets.
        // So it is not resumable midway; the set's side is.
        if cursor.scan.is_none() {
            cursor.confirmed = 0;
            let (tx, mut pages) = futures::channel::mpsc::channel::<Vec<i64>>(1);
            let produce = self
                .store
                .send_ids_where(check.ws, check.condition.clone(), batch, tx);
            let consume = async {
                let mut conn = self.redis.clone();
                while let Some(ids) = pages.next().await {
                    let held: Vec<bool> = redis::cmd("SMISMEMBER")
                        .arg(&members)
                        .arg(&ids)
                        .query_async(&mut conn)
                        .await?;
                    let absent: Vec<i64> = ids
                        .iter()
                        .zip(&held)
                        .filter(|(_, held)| !**held)
                        .map(|(id, _)| *id)
                        .collect();
                    cursor.confirmed += (ids.len() - absent.len()) as u64;
                    if !absent.is_empty() {
                        // Dropping `pages` stops the statement.
                        let Some(n) = self.settle(check, &absent, true).await? else {
                            return Ok(false);
                        };
                        found.missing += n;
                        if check.mode == Mode::Repair {
                            cursor.confirmed += n;
                        }
                    }
                }
                Ok::<bool, WorkerError>(true)
            };
            let (produced, consumed) = tokio::join!(produce, consume);
            if !consumed? {
                return Ok((Stop::Rebuilt, found));
            }
            produced?;
            let held: u64 = conn.scard(&members).await?;
            if held <= cursor.confirmed {
                return Ok((Stop::Done, found));
            }
            cursor.scan = Some(0);
        }
        while let Some(scan) = cursor.scan {
            let (next, ids): (u64, Vec<i64>) = redis::cmd("SSCAN")
                .arg(&members)
                .arg(scan)
                .arg("COUNT")
                .arg(batch)
                .query_async(&mut conn)
                .await?;
            if !ids.is_empty() {
                match self.settle(check, &ids, false).await? {
                    None => return Ok((Stop::Rebuilt, found)),
                    Some(n) => found.extra += n,
                }
            }
            cursor.scan = (next != 0).then_some(next);
            if cursor.scan.is_some() && out_of_time() {
                return Ok((Stop::Paused(cursor), found));
            }
        }
        Ok((Stop::Done, found))
    }

    /// Decides `ids` again from one snapshot and, repairing, applies what
    /// differs. `seen_missing`: whether the set was seen lacking them (else
    /// it was seen holding them). Returns how many differ (repairing: how
    /// many moved), or `None` when the set was rebuilt meanwhile.
    async fn settle(
        &self,
        check: &Check<'_>,
        ids: &[i64],
        seen_missing: bool,
    ) -> Result<Option<u64>, WorkerError> {
        let truths: Vec<MembershipTruth> = self
            .store
            .membership_truth(check.ws, check.condition.clone(), ids)
            .await?
            .into_iter()
            // Seen missing, drift only if SQL selects it; seen held, only
            // if SQL does not.
            .filter(|truth| (truth.member == Some(true)) == seen_missing)
            .collect();
        if truths.is_empty() || check.mode == Mode::Report {
            return Ok(Some(truths.len() as u64));
        }
        let moved = self
            .apply_truths(check.ws, check.segment, check.identity, &truths, "repair")
            .await?;
        if let Some(moved) = moved.filter(|m| *m > 0) {
            tracing::warn!(workspace = %check.ws, segment = %check.segment, members = moved, "repaired drift");
        }
        Ok(moved)
    }

    /// Makes the set agree with what SQL decided for each contact (`truths`,
    /// read by `Store::membership_truth`), where no newer decision got there
    /// first and the set is still the build `identity` names (from
    /// `build_identity`, read before the truths). The drift check's repair
    /// on its own, and how time moves members (`cause`: `repair`, `time`). Returns how many contacts moved, or `None` when the set
    /// was rebuilt since `identity` was read (the rest was not applied).
    pub async fn apply_truths(
        &self,
        ws: WorkspaceId,
        segment: SegmentId,
        identity: &str,
        truths: &[MembershipTruth],
        cause: &str,
    ) -> Result<Option<u64>, WorkerError> {
        // The version of a contact whose changes were all pruned: none of
        // them is newer than the highest pruned one.
        let pruned: Option<i64> = {
            let mut conn = self.redis.clone();
            conn.get(self.keys.pruned_through()).await?
        };
        let mut moved = 0;
        let mut conn = self.redis.clone();
        for chunk in truths.chunks(REPAIRS_PER_SCRIPT) {
            let keys = vec![
                self.keys.members(ws, segment),
                self.keys.meta(ws, segment),
                self.keys.versions(ws, segment),
                self.keys.events(ws),
            ];
            let mut args = vec![
                identity.to_owned(),
                cause.to_owned(),
                Timestamp::now().get().to_rfc3339(),
                self.settings.events_max_len.to_string(),
                segment.0.to_string(),
            ];
            for truth in chunk {
                args.push(truth.contact.0.to_string());
                args.push(if truth.member == Some(true) { "1" } else { "0" }.to_owned());
                args.push(match (truth.member, truth.version) {
                    (None, _) => String::new(),
                    (Some(_), Some(version)) => version.to_string(),
                    (Some(_), None) => pruned.unwrap_or(0).to_string(),
                });
            }
            let result: Vec<i64> = self.repair.run_many(&mut conn, &[(keys, args)]).await?;
            match result.first().copied() {
                Some(n) if n >= 0 => moved += n.unsigned_abs(),
                _ => return Ok(None),
            }
        }
        Ok(Some(moved))
    }

    /// Works on the drift check within `budget`; under a lease, stops at
    /// the first page after losing it.
    pub(crate) async fn drift_pass(
        &self,
        budget: DriftBudget,
        lease: Option<&Lease>,
    ) -> Result<DriftProgress, WorkerError> {
        let (deadline, every) = match budget {
            DriftBudget::Slice(slice) => (Some(Instant::now() + slice), self.settings.drift_every),
            DriftBudget::Complete => (None, Duration::ZERO),
        };
        let mut conn = self.redis.clone();
        let saved: (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.keys.drift())
            .arg(&["pass", "last"])
            .query_async(&mut conn)
            .await?;
        let last: Option<FinishedPass> = saved.1.and_then(|s| serde_json::from_str(&s).ok());
        let resumed: Option<Pass> = saved.0.and_then(|s| serde_json::from_str(&s).ok());
        let mut pass = match (resumed, budget) {
            (Some(pass), DriftBudget::Slice(_)) => pass,
            _ => {
                let due = last.as_ref().is_none_or(|l| {
                    now_ms() - l.finished_at_ms
                        >= i64::try_from(every.as_millis()).unwrap_or(i64::MAX)
                });
                if !due {
                    return Ok(DriftProgress::default());
                }
                Pass {
                    started_at_ms: now_ms(),
                    ..Pass::default()
                }
            }
        };
        let mut progress = DriftProgress::default();
        let mut worked = false;
        for ws in self.store.workspace_ids().await? {
            if ws.0 < pass.workspace {
                continue;
            }
            if ws.0 > pass.workspace {
                pass.workspace = ws.0;
                pass.segment = 0;
                pass.cursor = SegmentCursor::default();
            }
            let catalog = self.catalog(ws).await?;
            let mut segments: Vec<SegmentId> = catalog.segments.iter().map(|d| d.id).collect();
            segments.sort_unstable();
            for segment in segments {
                if segment.0 < pass.segment {
                    continue;
                }
                if segment.0 > pass.segment {
                    pass.segment = segment.0;
                    pass.cursor = SegmentCursor::default();
                }
                if let Some(lease) = lease {
                    lease.check()?;
                }
                if worked && deadline.is_some_and(|d| Instant::now() >= d) {
                    self.save_pass(&pass).await?;
                    return Ok(progress);
                }
                // A segment that time moves is first brought up to date with
                // time, so that what time moved is not taken for drift; one
                // whose conditions cannot say for whom is rebuilt by every
                // tick instead. An unbuilt one is built by the tick.
                if catalog.segments.time_dependent(segment)
                    && self.apply_time(ws, &catalog, segment).await?.is_none()
                {
                    continue;
                }
                let Some(identity) = self.build_identity(ws, segment).await? else {
                    continue;
                };
                // Compiled now, after the time pass: relative dates measured
                // from an instant older than the set's would count the moves
                // time made since as drift, and undo them.
                let ctx = catalog.sql_context(self.store.sql_backend(), Timestamp::now());
                let condition = segments_conditions::SegmentSql::membership_sql(
                    &catalog.segments,
                    segment,
                    &ctx,
                )
                .map_err(|e| WorkerError::Sql(segment, e))?;
                let check = Check {
                    ws,
                    segment,
                    condition: &condition,
                    identity: &identity,
                    mode: Mode::Repair,
                    deadline,
                };
                worked = true;
                let (stop, found) = self.check(&check, pass.cursor).await?;
                let repaired = found.missing + found.extra;
                if repaired > 0 {
                    pass.repaired_members += repaired;
                    progress.repaired_members += repaired;
                    let _: i64 = conn.hincr(self.keys.stats(ws), "repairs", repaired).await?;
                }
                if let Stop::Paused(mut cursor) = stop {
                    cursor.repaired = pass.cursor.repaired + repaired;
                    pass.cursor = cursor;
                    self.save_pass(&pass).await?;
                    return Ok(progress);
                }
                if pass.cursor.repaired + repaired > 0 {
                    pass.repaired_segments += 1;
                    progress.repaired_segments += 1;
                }
                pass.checked += 1;
                progress.checked += 1;
                // Past this segment: a resumed pass starts at the next one.
                pass.segment = segment.0 + 1;
                pass.cursor = SegmentCursor::default();
            }
            self.save_pass(&pass).await?;
        }
        let finished = FinishedPass {
            started_at_ms: pass.started_at_ms,
            finished_at_ms: now_ms(),
            checked: pass.checked,
            repaired_segments: pass.repaired_segments,
            repaired_members: pass.repaired_members,
        };
        let _: () = redis::pipe()
            .hdel(self.keys.drift(), "pass")
            .ignore()
            .hset(self.keys.drift(), "last", json(&finished))
            .ignore()
            .query_async(&mut conn)
            .await?;
        tracing::info!(?finished, "drift check finished");
        progress.finished = Some(finished);
        Ok(progress)
    }

    async fn save_pass(&self, pass: &Pass) -> Result<(), WorkerError> {
        let mut conn = self.redis.clone();
        let _: () = conn.hset(self.keys.drift(), "pass", json(pass)).await?;
        Ok(())
    }
}
