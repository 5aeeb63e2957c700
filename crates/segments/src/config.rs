//! Layered configuration: `config/default.toml`, then the optional
//! `config/<SEGMENTS_ENV>.toml`, then `SEGMENTS__SECTION__KEY` variables.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub database: DatabaseSection,
    pub http: HttpSection,
    pub redis: RedisSection,
    pub engine: EngineSection,
    pub worker: WorkerSection,
    pub telemetry: TelemetrySection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineSection {
    /// Deepest condition tree accepted, counting the leaves.
    pub max_depth: usize,
    /// Most conditions in one tree.
    pub max_leaves: usize,
    /// Conditions of a tree once its segment references are inlined.
    pub max_expanded_leaves: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseSection {
    pub url: Secret,
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// Connections for membership queries (search, preview, counts and
    /// pages read from SQL), apart from `max_connections`.
    pub query_connections: u32,
    /// How many of them one workspace may use at once.
    pub query_connections_per_workspace: u32,
    /// How long one membership query may run before the database stops it.
    pub query_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpSection {
    pub bind: String,
    pub max_body_bytes: usize,
    pub max_bulk_body_bytes: usize,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Sustained requests per second allowed to one API key; 0 turns
    /// rate limiting off.
    pub rate_limit_per_second: u32,
    /// Requests one API key may send at once above the sustained rate.
    pub rate_limit_burst: u32,
    /// How long an authenticated key is trusted without reading the
    /// database again: a key revoked through another API process keeps
    /// working that long. 0 reads the database on every request.
    pub auth_cache_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedisSection {
    /// Materialize segments into Redis sets. Off, every read evaluates SQL.
    pub enabled: bool,
    pub url: Secret,
    /// Keep the sets on a Redis Cluster instead: its nodes' URLs (any of
    /// them will do; the client finds the rest). Empty: `url` is one server.
    pub cluster_nodes: Vec<Secret>,
    /// The job queue's Redis when the sets are on a cluster (apalis-redis's
    /// scripts cannot run there); empty: `url`.
    pub queue_url: Secret,
    /// Prefix of every key, so deployments and test runs can share a Redis.
    pub prefix: String,
    /// Writes bring the sets up to date before they answer, so a read after
    /// a write sees it. Off, writes only queue their change: more writes a
    /// second, reads lagging by milliseconds.
    pub apply_before_answering: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSection {
    /// Jobs one process runs at once.
    pub concurrency: usize,
    /// When the reconciler runs: six-field cron, seconds first.
    pub reconcile_schedule: String,
    /// Seconds between worker heartbeats; a worker silent for three is
    /// presumed dead and its jobs handed to another.
    pub heartbeat_secs: u64,
    /// How long a shutdown waits for running jobs.
    pub shutdown_timeout_secs: u64,
    /// How often each worker process checks for waiting jobs and wakes
    /// its workers: the longest a job can wait for a missed wake-up.
    pub wake_interval_ms: u64,
    /// How often each worker process checks that Redis answers and still
    /// holds the data: an outage or an empty restart is repaired within it.
    pub redis_check_ms: u64,
    /// How often the drift check of every set (against SQL) starts.
    pub drift_check_every_secs: u64,
    /// How long each reconciler tick spends on the drift check before it
    /// saves its place for the next tick.
    pub drift_check_slice_ms: u64,
    /// Connections of the worker's own pool in `segments serve`, apart from
    /// the API's, so that jobs never queue behind requests for a connection.
    pub database_connections: u32,
    /// Where `segments worker` serves `/metrics` and `/healthz`; empty
    /// for nowhere. (`segments serve` serves them on the API's address.)
    pub metrics_bind: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelemetrySection {
    /// `pretty` for people, `json` for log collectors.
    pub format: LogFormat,
    /// A tracing filter; `RUST_LOG` overrides it.
    pub filter: String,
    /// Serve Prometheus metrics at `/metrics`.
    pub metrics: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A value that may carry credentials (database and Redis URLs): it never
/// appears in logs or debug output.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Built-in defaults: the same values as `config/default.toml`, so that the
/// binary also runs from a directory without one.
impl Default for Settings {
    fn default() -> Self {
        Self {
            database: DatabaseSection {
                url: Secret("sqlite://./data/segments.db".into()),
                max_connections: 8,
                acquire_timeout_secs: 10,
                migrate_on_start: true,
                query_connections: 4,
                query_connections_per_workspace: 2,
                query_timeout_ms: 10_000,
            },
            http: HttpSection {
                bind: "127.0.0.1:8080".into(),
                max_body_bytes: 1024 * 1024,
                max_bulk_body_bytes: 32 * 1024 * 1024,
                workers: 0,
                rate_limit_per_second: 1_000,
                rate_limit_burst: 2_000,
                auth_cache_secs: segments_api::DEFAULT_AUTH_CACHE_TTL.as_secs(),
            },
            redis: RedisSection {
                enabled: true,
                url: Secret("redis://127.0.0.1:6379".into()),
                cluster_nodes: Vec::new(),
                queue_url: Secret(String::new()),
                prefix: "segments".into(),
                apply_before_answering: true,
            },
            engine: EngineSection {
                max_depth: 5,
                max_leaves: 100,
                max_expanded_leaves: 1_000,
            },
            worker: WorkerSection {
                concurrency: 4,
                reconcile_schedule: "0 * * * * *".into(),
                heartbeat_secs: 5,
                shutdown_timeout_secs: 30,
                wake_interval_ms: 100,
                redis_check_ms: 1_000,
                drift_check_every_secs: 3_600,
                drift_check_slice_ms: 10_000,
                database_connections: 6,
                metrics_bind: "127.0.0.1:9464".into(),
            },
            telemetry: TelemetrySection {
                format: LogFormat::Pretty,
                filter: "info,sqlx=warn".into(),
                metrics: true,
            },
        }
    }
}

impl Settings {
    pub fn load(config_dir: &Path) -> Result<Self, Box<figment::Error>> {
        let environment = std::env::var("SEGMENTS_ENV").unwrap_or_else(|_| "development".into());
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(config_dir.join("default.toml")))
            .merge(Toml::file(config_dir.join(format!("{environment}.toml"))))
            .merge(Env::prefixed("SEGMENTS__").split("__"))
            .extract()
            .map_err(Box::new)
    }

    pub fn database(&self) -> segments_store::DatabaseSettings {
        segments_store::DatabaseSettings {
            url: self.database.url.expose().to_owned(),
            max_connections: self.database.max_connections,
            acquire_timeout: Duration::from_secs(self.database.acquire_timeout_secs),
            analytics: segments_store::AnalyticsSettings {
                connections: self.database.query_connections,
                per_workspace: self.database.query_connections_per_workspace,
                timeout: Duration::from_millis(self.database.query_timeout_ms),
            },
        }
    }

    /// The pool of the worker that `segments serve` runs beside the API.
    pub fn worker_database(&self) -> segments_store::DatabaseSettings {
        segments_store::DatabaseSettings {
            max_connections: self.worker.database_connections,
            ..self.database()
        }
    }

    pub fn engine(&self) -> segments_api::EngineSettings {
        segments_api::EngineSettings {
            limits: segments_conditions::Limits {
                max_depth: self.engine.max_depth,
                max_leaves: self.engine.max_leaves,
                max_expanded_leaves: self.engine.max_expanded_leaves,
            },
        }
    }

    pub fn materializer(&self) -> segments_worker::MaterializerSettings {
        segments_worker::MaterializerSettings {
            prefix: self.redis.prefix.clone(),
            limits: self.engine().limits,
            drift_every: Duration::from_secs(self.worker.drift_check_every_secs),
            drift_slice: Duration::from_millis(self.worker.drift_check_slice_ms),
            ..segments_worker::MaterializerSettings::default()
        }
    }

    pub fn worker(&self) -> segments_worker::WorkerSettings {
        segments_worker::WorkerSettings {
            concurrency: self.worker.concurrency,
            reconcile_schedule: self.worker.reconcile_schedule.clone(),
            heartbeat: Duration::from_secs(self.worker.heartbeat_secs),
            wake_interval: Duration::from_millis(self.worker.wake_interval_ms),
            redis_check_interval: Duration::from_millis(self.worker.redis_check_ms),
        }
    }

    pub fn http(&self) -> segments_api::HttpSettings {
        segments_api::HttpSettings {
            max_body_bytes: self.http.max_body_bytes,
            max_bulk_body_bytes: self.http.max_bulk_body_bytes,
            workers: self.http.workers,
            rate_limit: Some(segments_api::RateLimit {
                requests_per_second: self.http.rate_limit_per_second,
                burst: self.http.rate_limit_burst,
            }),
            shutdown_timeout: Duration::from_secs(self.worker.shutdown_timeout_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Settings::default();
        assert!(!format!("{s:?}").contains("sqlite://"));
    }

    #[test]
    fn the_checked_in_defaults_match_the_built_in_ones() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let from_file: Settings = Figment::from(Toml::file(dir.join("default.toml")))
            .extract()
            .unwrap_or_else(|e| panic!("config/default.toml: {e}"));
        assert_eq!(
            serde_json::to_value(from_file).ok(),
            serde_json::to_value(Settings::default()).ok()
        );
    }
}
