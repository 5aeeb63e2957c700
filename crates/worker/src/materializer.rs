//! The shared core of every job, and the reads the API makes of Redis.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::connection::SetsConnection;
use segments_conditions::Limits;
use segments_domain::{ContactId, SegmentId, WorkspaceId};
use segments_store::{Catalog, Store};

use crate::WorkerError;
use crate::keys::Keys;
use crate::scripts::{APPLY, FORGET, MARK_SWEPT, MARK_TIME, RAISE, REPAIR, SWAP, Script};

/// How the materializer behaves.
#[derive(Debug, Clone)]
pub struct MaterializerSettings {
    /// Prefix of every Redis key.
    pub prefix: String,
    /// Ids written per SADD while building.
    pub build_batch: usize,
    /// How long an abandoned build's temporary set lives.
    pub build_ttl: Duration,
    /// Approximate length the per-workspace event stream is capped at.
    pub events_max_len: u64,
    /// How long change-log rows are kept once swept.
    pub change_retention: Duration,
    /// Ids compared per page by the drift check: one SQL page, one
    /// SMISMEMBER or SSCAN, so no command holds Redis for long.
    pub drift_batch: usize,
    /// How often a drift check of every set starts.
    pub drift_every: Duration,
    /// How long one reconciler tick works on the drift check before it
    /// saves its place and leaves the rest to the next tick.
    pub drift_slice: Duration,
    pub limits: Limits,
}

impl Default for MaterializerSettings {
    fn default() -> Self {
        Self {
            prefix: "segments".into(),
            build_batch: 5_000,
            build_ttl: Duration::from_secs(3_600),
            events_max_len: 100_000,
            change_retention: Duration::from_secs(24 * 3_600),
            drift_batch: 1_000,
            drift_every: Duration::from_secs(3_600),
            drift_slice: Duration::from_secs(10),
            limits: Limits::default(),
        }
    }
}

/// A segment's materialization, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentStatus {
    pub count: u64,
    /// Incremented by every change to the set.
    pub version: u64,
    pub built_at: Option<String>,
    /// Drift the reconciler found and repaired in this segment.
    pub repairs: u64,
    /// The fingerprint of the definition the set was built for
    /// (`SegmentSet::fingerprint`).
    pub definition: Option<String>,
}

impl SegmentStatus {
    /// Whether the set reflects `segment`'s definition in `segments` (the
    /// reader's catalog): after an edit, until its rebuild lands, it does
    /// not, and the set must not answer for the new definition.
    pub fn reflects(&self, segments: &segments_conditions::SegmentSet, segment: SegmentId) -> bool {
        segments.built_for_current(segment, self.definition.as_deref())
    }
}

/// An immutable copy of a segment's members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub key: String,
    pub count: u64,
    pub expires_in: Duration,
}

/// Everything jobs need. Cheap to clone.
#[derive(Clone)]
pub struct Materializer {
    pub(crate) store: Store,
    /// The sets, their scripts and the events streams.
    pub(crate) redis: SetsConnection,
    /// The job queue's Redis (the sets' own, unless they are on a cluster).
    pub(crate) queue: ConnectionManager,
    /// For the connections workers open themselves to the queue's Redis
    /// (job fetching, pub/sub).
    pub(crate) client: redis::Client,
    pub(crate) keys: Keys,
    pub(crate) settings: MaterializerSettings,
    pub(crate) apply: Script,
    pub(crate) swap: Script,
    pub(crate) mark_swept: Script,
    pub(crate) forget: Script,
    pub(crate) repair: Script,
    pub(crate) raise: Script,
    pub(crate) mark_time: Script,
}

impl std::fmt::Debug for Materializer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Materializer")
            .field("prefix", &self.keys.prefix())
            .finish()
    }
}

/// A connection manager that fails fast while Redis is down, instead of
/// making API requests wait on it.
pub async fn connect(url: &str) -> Result<ConnectionManager, WorkerError> {
    manager(redis::Client::open(url)?)
}

fn manager(client: redis::Client) -> Result<ConnectionManager, WorkerError> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(1);
    // Lazy: the process starts (and serves) while Redis is down, and
    // connects when it comes back.
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

impl Materializer {
    pub fn new(
        store: Store,
        client: redis::Client,
        settings: MaterializerSettings,
    ) -> Result<Self, WorkerError> {
        let redis = manager(client.clone())?;
        Ok(Self::assemble(
            store,
            SetsConnection::Single(redis.clone()),
            redis,
            client,
            settings,
        ))
    }

    /// Connects to a Redis Cluster for the sets (`nodes`: any of its
    /// nodes), and to the Redis server at `queue_url` for the job queue.
    pub async fn connect_cluster(
        store: Store,
        nodes: &[String],
        queue_url: &str,
        settings: MaterializerSettings,
    ) -> Result<Self, WorkerError> {
        let cluster = redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(10))
            .build()?
            .get_async_connection()
            .await?;
        let client = redis::Client::open(queue_url)?;
        let queue = manager(client.clone())?;
        Ok(Self::assemble(
            store,
            SetsConnection::Cluster(cluster),
            queue,
            client,
            settings,
        ))
    }

    fn assemble(
        store: Store,
        redis: SetsConnection,
        queue: ConnectionManager,
        client: redis::Client,
        settings: MaterializerSettings,
    ) -> Self {
        Self {
            store,
            redis,
            queue,
            client,
            keys: Keys::new(settings.prefix.clone()),
            settings,
            apply: Script::new(APPLY),
            swap: Script::new(SWAP),
            mark_swept: Script::new(MARK_SWEPT),
            forget: Script::new(FORGET),
            repair: Script::new(REPAIR),
            raise: Script::new(RAISE),
            mark_time: Script::new(MARK_TIME),
        }
    }

    /// Connects to Redis at `url`.
    pub async fn connect(
        store: Store,
        url: &str,
        settings: MaterializerSettings,
    ) -> Result<Self, WorkerError> {
        Self::new(store, redis::Client::open(url)?, settings)
    }

    /// A client speaking RESP3, which pub/sub wake-ups of workers need.
    pub(crate) fn resp3_client(&self) -> Result<redis::Client, WorkerError> {
        let info = self.client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        Ok(redis::Client::open(info.set_redis_settings(settings))?)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The connection to the sets.
    pub fn redis(&self) -> SetsConnection {
        self.redis.clone()
    }

    /// The connection to the job queue's Redis.
    pub fn queue_redis(&self) -> ConnectionManager {
        self.queue.clone()
    }

    pub(crate) async fn catalog(&self, ws: WorkspaceId) -> Result<Arc<Catalog>, WorkerError> {
        Ok(self.store.catalog(ws).await?)
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), WorkerError> {
        let mut conn = self.redis.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// The segment's materialization, or `None` while it has never been built.
    pub async fn status(
        &self,
        ws: WorkspaceId,
        segment: SegmentId,
    ) -> Result<Option<SegmentStatus>, WorkerError> {
        let mut conn = self.redis.clone();
        let meta: HashMap<String, String> = conn.hgetall(self.keys.meta(ws, segment)).await?;
        if meta.is_empty() {
            return Ok(None);
        }
        let number = |k: &str| meta.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(Some(SegmentStatus {
            count: number("count"),
            version: number("version"),
            built_at: meta.get("built_at").cloned(),
            repairs: number("repairs"),
            definition: meta.get("definition").cloned(),
        }))
    }

    /// For each of `segments`, the fingerprint of the definition its set
    /// was built for, `None` if it was never built (one round trip).
    pub async fn built_definitions(
        &self,
        ws: WorkspaceId,
        segments: &[SegmentId],
    ) -> Result<Vec<Option<String>>, WorkerError> {
        if segments.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for segment in segments {
            pipe.cmd("HMGET")
                .arg(self.keys.meta(ws, *segment))
                .arg(&["built_at", "definition"]);
        }
        let mut conn = self.redis.clone();
        let built: Vec<(Option<String>, Option<String>)> = pipe.query_async(&mut conn).await?;
        Ok(built
            .into_iter()
            .map(|(at, definition)| at.map(|_| definition.unwrap_or_default()))
            .collect())
    }

    /// A page of members by SSCAN: `cursor` 0 starts, a returned 0 ends.
    /// Like SSCAN itself, a member may appear twice if the set is rehashed
    /// mid-iteration; none present throughout is missed.
    pub async fn members(
        &self,
        ws: WorkspaceId,
        segment: SegmentId,
        cursor: u64,
        count: u64,
    ) -> Result<(Vec<ContactId>, u64), WorkerError> {
        let mut conn = self.redis.clone();
        let (next, ids): (u64, Vec<i64>) = redis::cmd("SSCAN")
            .arg(self.keys.members(ws, segment))
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await?;
        Ok((ids.into_iter().map(ContactId).collect(), next))
    }

    /// Every member (for checks and tests; campaign senders SSCAN the key).
    pub async fn all_members(
        &self,
        ws: WorkspaceId,
        segment: SegmentId,
    ) -> Result<Vec<ContactId>, WorkerError> {
        let mut conn = self.redis.clone();
        let mut ids: Vec<i64> = conn.smembers(self.keys.members(ws, segment)).await?;
        ids.sort_unstable();
        Ok(ids.into_iter().map(ContactId).collect())
    }

    /// The built segments, among `segments`, that `contact` belongs to.
    pub async fn segments_of(
        &self,
        ws: WorkspaceId,
        contact: ContactId,
        segments: &[SegmentId],
    ) -> Result<Vec<SegmentId>, WorkerError> {
        if segments.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for s in segments {
            pipe.cmd("SISMEMBER")
                .arg(self.keys.members(ws, *s))
                .arg(contact.0);
        }
        let mut conn = self.redis.clone();
        let flags: Vec<bool> = pipe.query_async(&mut conn).await?;
        Ok(segments
            .iter()
            .zip(flags)
            .filter(|(_, member)| *member)
            .map(|(s, _)| *s)
            .collect())
    }

    /// Copies the live set to an immutable key that expires after `ttl`.
    pub async fn snapshot(
        &self,
        ws: WorkspaceId,
        segment: SegmentId,
        ttl: Duration,
    ) -> Result<Snapshot, WorkerError> {
        let token = token();
        let key = self.keys.snapshot(ws, segment, &token);
        let mut conn = self.redis.clone();
        // One atomic pipeline: the snapshot is the set as of one instant.
        let (count,): (u64,) = redis::pipe()
            .atomic()
            .cmd("COPY")
            .arg(self.keys.members(ws, segment))
            .arg(&key)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(ttl.as_secs().max(1))
            .ignore()
            .cmd("SCARD")
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        Ok(Snapshot {
            key,
            count,
            expires_in: ttl,
        })
    }

    /// Removes a deleted segment's keys.
    pub async fn forget_segment(
        &self,
        ws: WorkspaceId,
        segment: SegmentId,
    ) -> Result<(), WorkerError> {
        let mut conn = self.redis.clone();
        let _: () = conn
            .del(&[
                self.keys.members(ws, segment),
                self.keys.meta(ws, segment),
                self.keys.versions(ws, segment),
            ])
            .await?;
        Ok(())
    }
}

/// A random token for temporary keys.
pub(crate) fn token() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}{:x}", std::process::id())
}
