//! Merging the change notices of writes that arrive together into one
//! job per workspace.

use std::time::Duration;

use segments_domain::{ContactId, WorkspaceId};
use segments_store::ChangeStamp;
use std::collections::{BTreeMap, BTreeSet};

use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

use super::protocol::Job;
use super::queue::JobQueue;

/// A write's announcement, before it becomes a job.
#[derive(Debug)]
pub(super) struct Notice {
    pub(super) workspace: WorkspaceId,
    /// Each contact with its version, when the writer knew it.
    pub(super) contacts: Vec<(ContactId, Option<ChangeStamp>)>,
    pub(super) changed: Vec<String>,
    /// When the write announced it.
    pub(super) at: tokio::time::Instant,
}

/// The job announcing `contacts`; versions ride along only when some are
/// known.
pub(super) fn contacts_job(
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

pub(super) async fn coalesce(queue: JobQueue, mut rx: mpsc::UnboundedReceiver<Notice>) {
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
}
