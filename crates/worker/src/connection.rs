//! The connection the sets, their scripts and the events streams go
//! through: one Redis server, or a Redis Cluster (`redis.cluster`).
//!
//! Every key of a workspace carries its hash tag (`keys`), so each script
//! and each pipeline — all of them stay within one workspace — touches one
//! slot, as a cluster requires. The job queue is not on this connection:
//! apalis-redis's scripts span keys without a shared hash tag, so on a
//! cluster the queue uses a Redis server of its own (`redis.queue_url`).

use futures::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// One Redis or a cluster; cheap to clone (both multiplex).
#[derive(Clone)]
pub enum SetsConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for SetsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "SetsConnection::Single",
            Self::Cluster(_) => "SetsConnection::Cluster",
        })
    }
}

impl ConnectionLike for SetsConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl SetsConnection {
    /// The keys matching `pattern` on the node that holds `slot_key`'s
    /// slot (on one server: all of them). A cluster's `SCAN` walks one
    /// node, so it is sent where the pattern's hash tag lives.
    pub async fn scan_slot(
        &mut self,
        pattern: &str,
        slot_key: &str,
    ) -> Result<Vec<String>, redis::RedisError> {
        match self {
            Self::Single(c) => {
                let mut iter = redis::AsyncCommands::scan_match::<_, String>(c, pattern).await?;
                let mut keys = Vec::new();
                while let Some(key) = iter.next().await {
                    keys.push(key?);
                }
                Ok(keys)
            }
            Self::Cluster(c) => {
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_key(slot_key, SlotAddr::Master),
                ));
                let mut cursor: u64 = 0;
                let mut keys = Vec::new();
                loop {
                    let mut cmd = redis::cmd("SCAN");
                    cmd.arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1_000);
                    let reply = c.route_command(cmd, route.clone()).await?;
                    let (next, page): (u64, Vec<String>) = redis::from_redis_value(reply)?;
                    keys.extend(page);
                    if next == 0 {
                        return Ok(keys);
                    }
                    cursor = next;
                }
            }
        }
    }
}
