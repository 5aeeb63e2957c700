//! What time alone changes: a segment with relative dates ("first contacted
//! within the last 30 days") gains and loses members as the clock moves,
//! with no write to say so. Each reconciler tick re-decides, from SQL, only
//! the contacts whose membership can have flipped since the set was last
//! brought up to date with time — those the conditions' time windows select
//! (`SegmentSet::time_window_sql`) — instead of rebuilding the segment.
//! A segment whose conditions cannot say is rebuilt as before.

use chrono::DateTime;
use segments_conditions::SegmentSql;
use segments_domain::{SegmentId, Timestamp, WorkspaceId};
use segments_store::Catalog;

use crate::{Materializer, WorkerError};

impl Materializer {
    /// Moves the members of `segment` that time moved since the set was
    /// built or last brought up to date with time, each as an
    /// `entered`/`exited` event with cause `time`. Returns how many moved,
    /// or `None` when the segment must be rebuilt instead (never built, or
    /// a condition that cannot narrow down whom time changes).
    pub(crate) async fn apply_time(
        &self,
        ws: WorkspaceId,
        catalog: &Catalog,
        segment: SegmentId,
    ) -> Result<Option<u64>, WorkerError> {
        // The identity is read before any decision: a build that swaps in
        // later makes every one of them refused (see `REPAIR`).
        let Some(identity) = self.build_identity(ws, segment).await? else {
            return Ok(None);
        };
        let mut conn = self.redis.clone();
        let (built_at, time_at): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.keys.meta(ws, segment))
            .arg(&["built_at", "time_at"])
            .query_async(&mut conn)
            .await?;
        let instant = |s: Option<String>| {
            s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
                .map(|t| t.to_utc())
        };
        let Some(from) = instant(built_at).max(instant(time_at)) else {
            return Ok(None);
        };
        let from = Timestamp::from_stored(from);
        let to = Timestamp::now();
        let ctx = catalog.sql_context(self.store.sql_backend(), to);
        let Some(window) = catalog.segments.time_window_sql(segment, from, to, &ctx) else {
            return Ok(None);
        };
        let condition = catalog
            .segments
            .membership_sql(segment, &ctx)
            .map_err(|e| WorkerError::Sql(segment, e))?;
        let batch = self.settings.drift_batch.max(1) as u64;
        let mut after = 0;
        let mut moved = 0;
        loop {
            let ids = self
                .store
                .member_ids_after(ws, window.clone(), after, batch)
                .await?;
            let Some(&last) = ids.last() else { break };
            // Decided at `to`, from one snapshot with each contact's version.
            let truths = self
                .store
                .membership_truth(ws, condition.clone(), &ids)
                .await?;
            match self
                .apply_truths(ws, segment, &identity, &truths, "time")
                .await?
            {
                Some(n) => moved += n,
                // Rebuilt meanwhile: the new build is current as of its own
                // instant, which it records.
                None => return Ok(Some(moved)),
            }
            after = last;
        }
        let _: Vec<i64> = self
            .mark_time
            .run_many(
                &mut conn,
                &[(
                    vec![self.keys.meta(ws, segment)],
                    vec![identity, to.get().to_rfc3339()],
                )],
            )
            .await?;
        Ok(Some(moved))
    }
}
