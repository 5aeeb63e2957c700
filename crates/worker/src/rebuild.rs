//! Full rebuilds: stream the matching ids from SQL into a temporary set,
//! then swap it in atomically. Readers never see a partial set; a crashed
//! build leaves the live set untouched and its temporary set expiring.

use futures::StreamExt;
use segments_conditions::SegmentSql;
use segments_domain::{SegmentId, Timestamp, WorkspaceId};
use segments_store::ChangeSnapshot;

use crate::materializer::token;
use crate::{Materializer, WorkerError};

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildReport {
    pub members: u64,
    /// False when a newer build had already landed and this one was discarded.
    pub swapped: bool,
}

impl Materializer {
    /// Rebuilds one segment from SQL.
    pub async fn rebuild(
        &self,
        ws: WorkspaceId,
        segment: SegmentId,
    ) -> Result<RebuildReport, WorkerError> {
        let started = std::time::Instant::now();
        let catalog = self.catalog(ws).await?;
        tracing::debug!(elapsed = ?started.elapsed(), "rebuild: catalog loaded");
        if !catalog.segments.contains(segment) {
            self.forget_segment(ws, segment).await?;
            crate::metrics::rebuilt("deleted", None);
            return Ok(RebuildReport {
                members: 0,
                swapped: false,
            });
        }
        let now = Timestamp::now();
        let ctx = catalog.sql_context(self.store.sql_backend(), now);
        let condition = catalog
            .segments
            .membership_sql(segment, &ctx)
            .map_err(|e| WorkerError::Sql(segment, e))?;

        let building = self.keys.building(ws, segment, &token());
        let mut conn = self.redis.clone();
        let (tx, mut batches) = futures::channel::mpsc::channel::<Vec<i64>>(1);
        let produce = self
            .store
            .send_ids_where(ws, condition, self.settings.build_batch, tx);
        let consume = async {
            let mut pipe = redis::pipe();
            let mut pending = 0usize;
            let mut first = true;
            // Several SADDs in flight per round trip; the first one also sets
            // the expiry, so an abandoned build cleans itself up.
            while let Some(ids) = batches.next().await {
                pipe.cmd("SADD").arg(&building).arg(ids).ignore();
                if first {
                    pipe.cmd("EXPIRE")
                        .arg(&building)
                        .arg(self.settings.build_ttl.as_secs())
                        .ignore();
                    first = false;
                }
                pending += 1;
                if pending == 4 {
                    let () = pipe.query_async(&mut conn).await?;
                    pipe = redis::pipe();
                    pending = 0;
                }
            }
            if pending > 0 {
                let () = pipe.query_async(&mut conn).await?;
            }
            Ok::<(), WorkerError>(())
        };
        let (produced, consumed) = tokio::join!(produce, consume);
        consumed?;
        // The build reflects exactly the changes its snapshot saw: those
        // decide which later decisions apply to the new set (see APPLY), and
        // the others are replayed once it is in.
        let (_, snapshot) = produced?;
        tracing::debug!(elapsed = ?started.elapsed(), "rebuild: ids streamed");

        let keys = vec![
            building,
            self.keys.members(ws, segment),
            self.keys.meta(ws, segment),
            self.keys.versions(ws, segment),
            self.keys.events(ws),
        ];
        let in_progress: String = snapshot
            .in_progress
            .iter()
            .map(|x| format!(",{x}"))
            .chain(std::iter::once(",".to_owned()))
            .collect();
        let args = vec![
            catalog.version.to_string(),
            snapshot.xmin.to_string(),
            snapshot.xmax.to_string(),
            in_progress,
            now.get().to_rfc3339(),
            catalog.segments.fingerprint(segment),
            segment.0.to_string(),
            self.settings.events_max_len.to_string(),
        ];
        let result: Vec<i64> = self.swap.run_many(&mut conn, &[(keys, args)]).await?;
        let count = result.first().copied().unwrap_or(-1);
        if count < 0 {
            crate::metrics::rebuilt("superseded", None);
            return Ok(RebuildReport {
                members: 0,
                swapped: false,
            });
        }
        tracing::debug!(elapsed = ?started.elapsed(), "rebuild: swapped");
        crate::metrics::rebuilt("swapped", Some(started.elapsed()));
        // Changes the snapshot did not see may have been applied to the set
        // this build replaced, before the swap: evaluate them again on the
        // new one. (Those whose jobs run after the swap apply by themselves.)
        self.replay_unseen(ws, &snapshot).await?;
        tracing::info!(workspace = %ws, segment = %segment, members = count, "segment rebuilt");
        Ok(RebuildReport {
            members: u64::try_from(count).unwrap_or(0),
            swapped: true,
        })
    }

    /// Re-applies every committed change of the workspace that `snapshot`
    /// did not see.
    pub(crate) async fn replay_unseen(
        &self,
        ws: WorkspaceId,
        snapshot: &ChangeSnapshot,
    ) -> Result<(), WorkerError> {
        let mut after = 0;
        loop {
            let changes = self
                .store
                .changes_unseen(Some(snapshot), None, Some(ws), after, 10_000)
                .await?;
            let Some(last) = changes.last() else { break };
            after = last.seq;
            let mut ids: Vec<_> = changes.iter().map(|c| c.contact_id).collect();
            ids.sort_unstable();
            ids.dedup();
            self.contacts_changed(
                ws,
                &ids,
                &[segments_conditions::ALL_CHANGES.to_owned()],
                "replay",
            )
            .await?;
        }
        Ok(())
    }
}
