//! What a job says: the queue's wire format, read by every worker version
//! that may still be running.

use serde::{Deserialize, Serialize};

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

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::coalescer::contacts_job;
    use segments_domain::{ContactId, WorkspaceId};
    use segments_store::ChangeStamp;

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
