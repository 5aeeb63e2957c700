//! Test support: start the real application on a random port, against a
//! fresh database of either backend, and talk to it over HTTP.
//!
//! Each test gets its own database (a temporary SQLite file, or a uniquely
//! named PostgreSQL database that is dropped afterwards), so tests never
//! depend on what else is in the shared server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: failing loudly is the point

mod database;
pub mod load;
mod materialized;

use reqwest::{Method, StatusCode};
use segments_api::HttpSettings;
use segments_conditions::Registry;
use segments_domain::Label;
use segments_store::{AnalyticsSettings, DatabaseSettings, Store};
use serde_json::Value;

pub use database::{Backend, TestDatabase};
pub use materialized::{Materialized, RedisCluster, RedisServer};

/// The running application and a client authenticated for one workspace.
#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// The API key of the test's first workspace.
    pub key: String,
    pub store: Store,
    pub backend: Backend,
    /// The materializer and its workers, when started with one.
    pub materialized: Option<Materialized>,
    application: segments::Application,
    database: TestDatabase,
}

/// A response, read eagerly.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// Asserts the status and returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self.body
    }

    /// Asserts a problem+json answer with this status; returns the problem.
    #[track_caller]
    pub fn problem(self, status: u16) -> Value {
        assert_eq!(
            self.content_type, "application/problem+json",
            "body: {}",
            self.body
        );
        let body = self.expect(status);
        assert_eq!(body["status"], status);
        assert!(
            body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("https://")),
            "{body}"
        );
        body
    }

    /// The pointers of a problem's failing fields.
    pub fn pointers(problem: &Value) -> Vec<String> {
        problem["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["pointer"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, two_workers()).await
    }

    pub async fn spawn_with(backend: Backend, http: HttpSettings) -> Self {
        Self::spawn_full(backend, http, Registry::builtin()).await
    }

    /// Starts the app with a registry of the caller's choosing (to test plugins).
    pub async fn spawn_full(backend: Backend, http: HttpSettings, registry: Registry) -> Self {
        Self::start(backend, http, registry, None, &|s| s).await
    }

    /// Starts the app with membership queries bounded as given.
    pub async fn spawn_with_analytics(backend: Backend, analytics: AnalyticsSettings) -> Self {
        Self::spawn_tuned(backend, &move |s| DatabaseSettings {
            analytics: analytics.clone(),
            ..s
        })
        .await
    }

    /// Starts the app over its database's settings as `tune` changes them.
    pub async fn spawn_tuned(
        backend: Backend,
        tune: &dyn Fn(DatabaseSettings) -> DatabaseSettings,
    ) -> Self {
        Self::start(backend, two_workers(), Registry::builtin(), None, tune).await
    }

    /// Starts the app with a materializer on `redis_url` (a unique key
    /// prefix per app) and `workers` worker loops in this process.
    pub async fn spawn_materialized(backend: Backend, redis_url: &str, workers: usize) -> Self {
        Self::start(
            backend,
            two_workers(),
            Registry::builtin(),
            Some((redis_url, workers, true)),
            &|s| s,
        )
        .await
    }

    /// As `spawn_materialized`, with writes that only queue their changes
    /// (`redis.apply_before_answering = false`): the queue's path alone.
    pub async fn spawn_queued(backend: Backend, redis_url: &str, workers: usize) -> Self {
        Self::start(
            backend,
            two_workers(),
            Registry::builtin(),
            Some((redis_url, workers, false)),
            &|s| s,
        )
        .await
    }

    async fn start(
        backend: Backend,
        http: HttpSettings,
        registry: Registry,
        redis: Option<(&str, usize, bool)>,
        tune: &dyn Fn(DatabaseSettings) -> DatabaseSettings,
    ) -> Self {
        // `SEGMENTS_TEST_LOG=<filter>` shows the app's logs (e.g. the cause
        // behind a 500) beside the failing test's output.
        if let Ok(filter) = std::env::var("SEGMENTS_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let database = TestDatabase::create(backend).await;
        let settings = settings_for(&tune(database.settings()), &http, redis);
        let workers = redis.map_or(0, |(_, workers, _)| workers);
        let application =
            segments::Application::start(&settings, std::sync::Arc::new(registry), workers > 0)
                .await
                .expect("start the application");
        let store = application.store().clone();
        let materialized = redis.map(|_| Materialized::of(&application, &settings, workers));
        let address = format!("http://{}", application.address());
        let (_, key) = store
            .create_workspace(&Label::parse("test").expect("label"))
            .await
            .expect("workspace");
        Self {
            address,
            // Idle connections are dropped before the server's keep-alive
            // (5 s) closes them: reusing one the server is closing fails
            // the request (IncompleteMessage).
            client: reqwest::Client::builder()
                .pool_idle_timeout(std::time::Duration::from_secs(4))
                .build()
                .expect("HTTP client"),
            key: key.secret,
            store,
            backend,
            materialized,
            application,
            database,
        }
    }

    /// The URL of this app's database, for tests that reach past the API.
    pub fn database_url(&self) -> &str {
        self.database.url()
    }

    /// The workspace of this app's key.
    pub async fn workspace_id(&self) -> segments_domain::WorkspaceId {
        self.store
            .authenticate(&self.key)
            .await
            .expect("authenticate")
            .expect("a valid key")
            .workspace_id
    }

    /// Creates another workspace and returns its key.
    pub async fn other_workspace(&self) -> String {
        let (_, key) = self
            .store
            .create_workspace(&Label::parse("other").expect("label"))
            .await
            .expect("workspace");
        key.secret
    }

    pub async fn stop(self) {
        self.application.stop().await;
        if let Some(m) = self.materialized {
            m.stop().await;
        }
    }

    /// Sends a request with this app's key.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_as(&self.key, method, path, body).await
    }

    pub async fn call_as(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request")).await
    }

    /// Sends raw bytes with the given content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let request = self
            .client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(&self.key)
            .header("content-type", content_type)
            .body(body);
        read(request.send().await.expect("request")).await
    }

    /// Reads `/metrics` (Prometheus text).
    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        response.text().await.expect("body")
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates a contact and returns it.
    pub async fn contact(&self, body: Value) -> Value {
        self.post("/v1/contacts", body).await.expect(201)
    }

    /// Creates a segment and returns its id.
    pub async fn segment(&self, body: Value) -> i64 {
        self.post("/v1/segments", body).await.expect(201)["id"]
            .as_i64()
            .expect("a segment id")
    }

    /// Declares an attribute.
    pub async fn attribute(&self, key: &str, ty: &str) -> Value {
        self.post(
            "/v1/attributes",
            serde_json::json!({"key": key, "type": ty}),
        )
        .await
        .expect(201)
    }
}

/// The configuration a test app runs: the shipped defaults, with the test's
/// database, HTTP limits and Redis (on a key prefix of its own); the
/// reconciler only runs when a test calls it, and workers beat every second
/// so that a killed one is noticed quickly.
fn settings_for(
    database: &DatabaseSettings,
    http: &HttpSettings,
    redis: Option<(&str, usize, bool)>,
) -> segments::Settings {
    use segments::config::Secret;
    let mut s = segments::Settings::default();
    s.database.url = Secret::new(database.url.clone());
    s.database.max_connections = database.max_connections;
    s.database.acquire_timeout_secs = database.acquire_timeout.as_secs().max(1);
    s.database.migrate_on_start = true;
    s.database.query_connections = database.analytics.connections;
    s.database.query_connections_per_workspace = database.analytics.per_workspace;
    s.database.query_timeout_ms =
        u64::try_from(database.analytics.timeout.as_millis()).unwrap_or(u64::MAX);
    s.http.bind = "127.0.0.1:0".into();
    s.http.max_body_bytes = http.max_body_bytes;
    s.http.max_bulk_body_bytes = http.max_bulk_body_bytes;
    s.http.workers = http.workers;
    (s.http.rate_limit_per_second, s.http.rate_limit_burst) = http
        .rate_limit
        .map_or((0, 0), |l| (l.requests_per_second, l.burst));
    s.worker.shutdown_timeout_secs = http.shutdown_timeout.as_secs();
    s.worker.reconcile_schedule = "0 0 0 1 1 * 2099".into();
    s.worker.heartbeat_secs = 1;
    s.worker.database_connections = database.max_connections;
    s.redis.enabled = redis.is_some();
    if let Some((url, _, apply_before_answering)) = redis {
        s.redis.url = Secret::new(url);
        s.redis.prefix = materialized::unique_prefix();
        s.redis.apply_before_answering = apply_before_answering;
    }
    s.telemetry.metrics = true;
    s
}

/// The HTTP settings of test apps: two workers are enough, and keep the
/// threads of many apps at once in bounds.
fn two_workers() -> HttpSettings {
    HttpSettings {
        workers: 2,
        ..HttpSettings::default()
    }
}

/// Polls `check` until it answers `Ok`; past `within`, fails the test with
/// its last `Err`. For what converges asynchronously (sets, jobs, metrics).
pub async fn eventually<F, Fut>(within: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(()) => return,
            Err(why) => assert!(std::time::Instant::now() < deadline, "{why}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The value of the first sample of `name` in a Prometheus exposition
/// whose labels include every one of `labels` (e.g. `kind="rebuild"`).
pub fn metric(exposition: &str, name: &str, labels: &[&str]) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            series.split('{').next() == Some(name) && labels.iter().all(|l| series.contains(l))
        })
        .and_then(|(_, value)| value.parse().ok())
}

async fn read(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Reply {
        status,
        content_type,
        body,
        headers,
    }
}

/// Runs an async test body once per backend, as `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}
