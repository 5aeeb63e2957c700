//! The Redis layout — a public contract, documented in README.md and
//! ARCHITECTURE.md.
//!
//! Every key of a workspace carries the workspace id in a hash tag
//! (`{42}`), so one workspace's keys share a Redis Cluster slot and the
//! multi-key scripts stay legal there.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>:{<ws>}:segment:<id>:members` | set | contact ids of the segment's members |
//! | `<prefix>:{<ws>}:segment:<id>:meta` | hash | `version`, `count`, `built_at`, `built_catalog`, `built_xmin`, `built_xmax`, `built_xip`, `definition` (`SegmentSet::fingerprint`), `repairs`, `time_at` |
//! | `<prefix>:{<ws>}:segment:<id>:versions` | hash | contact id → version last applied (since the last build) |
//! | `<prefix>:{<ws>}:segment:<id>:building:<token>` | set | a build in progress (expires) |
//! | `<prefix>:{<ws>}:snapshot:<id>:<token>` | set | an immutable copy for a campaign (expires) |
//! | `<prefix>:{<ws>}:events` | stream | `segment`, `contact`, `change` (entered/exited), `cause`, `at` |
//! | `<prefix>:{<ws>}:stats` | hash | `repairs`, `last_reconcile_at` |
//! | `<prefix>_jobs…` | apalis | the job queue (`:` in the prefix becomes `_`) |
//! | `<prefix>:swept` | string | the snapshot (`xmin:xmax:xip,…`) the change log has been swept through |
//! | `<prefix>:epoch` | string | present while Redis holds the deployment's data (a restore writes it) |
//! | `<prefix>:reconcile-lock` | string | the reconciler's lease (renewed while held) |
//! | `<prefix>:drift` | hash | `pass`: the drift check in progress, `last`: the last one finished (JSON) |
//! | `<prefix>:pruned-through` | string | the highest change sequence number pruned from the log |

use segments_domain::{SegmentId, WorkspaceId};

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn workspace(&self, ws: WorkspaceId) -> String {
        format!("{}:{{{}}}", self.prefix, ws.0)
    }

    pub fn members(&self, ws: WorkspaceId, segment: SegmentId) -> String {
        format!("{}:segment:{}:members", self.workspace(ws), segment.0)
    }

    pub fn meta(&self, ws: WorkspaceId, segment: SegmentId) -> String {
        format!("{}:segment:{}:meta", self.workspace(ws), segment.0)
    }

    pub fn versions(&self, ws: WorkspaceId, segment: SegmentId) -> String {
        format!("{}:segment:{}:versions", self.workspace(ws), segment.0)
    }

    pub fn building(&self, ws: WorkspaceId, segment: SegmentId, token: &str) -> String {
        format!(
            "{}:segment:{}:building:{token}",
            self.workspace(ws),
            segment.0
        )
    }

    pub fn snapshot(&self, ws: WorkspaceId, segment: SegmentId, token: &str) -> String {
        format!("{}:snapshot:{}:{token}", self.workspace(ws), segment.0)
    }

    pub fn events(&self, ws: WorkspaceId) -> String {
        format!("{}:events", self.workspace(ws))
    }

    pub fn stats(&self, ws: WorkspaceId) -> String {
        format!("{}:stats", self.workspace(ws))
    }

    /// The pattern of every segment meta key of a workspace.
    pub fn meta_pattern(&self, ws: WorkspaceId) -> String {
        format!("{}:segment:*:meta", self.workspace(ws))
    }

    /// The segment id in a meta key, if it is one.
    pub fn segment_of_meta(&self, ws: WorkspaceId, key: &str) -> Option<SegmentId> {
        let rest = key.strip_prefix(&format!("{}:segment:", self.workspace(ws)))?;
        rest.strip_suffix(":meta")?.parse().ok().map(SegmentId)
    }

    /// The apalis queue. apalis-redis wakes workers through pub/sub channels
    /// named after the queue and split on `:`, so the name holds none.
    pub fn queue(&self) -> String {
        let safe: String = self
            .prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{safe}_jobs")
    }

    /// Present while Redis holds this deployment's data: written after a
    /// full restore, gone when Redis lost everything (see `recovery`).
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    pub fn swept(&self) -> String {
        format!("{}:swept", self.prefix)
    }

    pub fn drift(&self) -> String {
        format!("{}:drift", self.prefix)
    }

    pub fn pruned_through(&self) -> String {
        format!("{}:pruned-through", self.prefix)
    }

    pub fn reconcile_lock(&self) -> String {
        format!("{}:reconcile-lock", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_keys_share_a_hash_tag() {
        let k = Keys::new("seg");
        assert_eq!(
            k.members(WorkspaceId(7), SegmentId(3)),
            "seg:{7}:segment:3:members"
        );
        assert_eq!(k.events(WorkspaceId(7)), "seg:{7}:events");
        assert_eq!(
            k.segment_of_meta(WorkspaceId(7), &k.meta(WorkspaceId(7), SegmentId(31))),
            Some(SegmentId(31))
        );
    }
}
