//! The running service — the database, the materializer and its job queue,
//! the HTTP API and (unless asked not to) a worker beside it — wired from
//! `Settings` in one place. `segments serve` starts it, and so does every
//! end-to-end test, so the tests run the wiring production runs.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use segments_api::{AppState, Materialization};
use segments_conditions::Registry;
use segments_store::{Store, StoreError};
use segments_worker::{JobQueue, Materializer, WorkerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Settings;

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("connecting to the database: {0}")]
    Database(#[from] StoreError),
    #[error("configuring redis: {0}")]
    Redis(#[from] WorkerError),
    #[error("binding {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] segments_api::metrics::MetricsError),
    #[error("the HTTP server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The materializer and job queue over `store`, unless Redis is disabled.
pub async fn materialization(
    store: &Store,
    settings: &Settings,
) -> Result<Option<(Arc<Materializer>, JobQueue)>, AppError> {
    let Some(materializer) = materializer(store, settings).await? else {
        return Ok(None);
    };
    let jobs = JobQueue::new(
        materializer.queue_redis(),
        &materializer.keys().queue(),
        settings.worker().heartbeat,
        Duration::from_millis(500),
    )
    .coalescing();
    Ok(Some((Arc::new(materializer), jobs)))
}

/// A materializer reading through `store`, unless Redis is disabled.
pub async fn materializer(
    store: &Store,
    settings: &Settings,
) -> Result<Option<Materializer>, AppError> {
    if !settings.redis.enabled {
        return Ok(None);
    }
    let redis = &settings.redis;
    let materializer = if redis.cluster_nodes.is_empty() {
        Materializer::connect(store.clone(), redis.url.expose(), settings.materializer()).await?
    } else {
        let nodes: Vec<String> = redis
            .cluster_nodes
            .iter()
            .map(|n| n.expose().to_owned())
            .collect();
        let queue = match redis.queue_url.expose() {
            "" => redis.url.expose(),
            url => url,
        };
        Materializer::connect_cluster(store.clone(), &nodes, queue, settings.materializer()).await?
    };
    Ok(Some(materializer))
}

/// The service, running: its HTTP server on `address()`, and its worker.
pub struct Application {
    address: SocketAddr,
    store: Store,
    materialization: Option<Materialization>,
    worker_materializer: Option<Arc<Materializer>>,
    server: actix_web::dev::ServerHandle,
    running: JoinHandle<std::io::Result<()>>,
    worker: Option<JoinHandle<Result<(), WorkerError>>>,
    stop: watch::Sender<bool>,
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("address", &self.address)
            .field("materialized", &self.materialization.is_some())
            .field("worker", &self.worker.is_some())
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Connects (migrating first if `database.migrate_on_start`), binds
    /// `http.bind` (port 0 picks a free one), and starts serving — with a
    /// worker beside the API when `with_worker` and Redis is enabled.
    pub async fn start(
        settings: &Settings,
        registry: Arc<Registry>,
        with_worker: bool,
    ) -> Result<Self, AppError> {
        // The API and every worker read through this store (or another over
        // the same registry).
        let store = Store::connect(&settings.database(), registry).await?;
        if settings.database.migrate_on_start {
            store.migrate().await?;
        }
        let materialization = materialization(&store, settings).await?;
        // The worker beside the API gets a pool of its own: sharing one, each
        // of a job's statements waited behind the requests queued for a
        // connection (measured at 500 writes/s: ~6 ms a statement, with the
        // database's connections mostly idle).
        let worker_materializer = if !with_worker {
            None
        } else if settings.database().is_in_memory() {
            materializer(&store, settings).await?
        } else {
            let worker_store = store.connect_another(&settings.worker_database()).await?;
            materializer(&worker_store, settings).await?
        }
        .map(Arc::new);
        let listener = TcpListener::bind(&settings.http.bind).map_err(|source| AppError::Bind {
            address: settings.http.bind.clone(),
            source,
        })?;
        let address = listener.local_addr().map_err(AppError::Http)?;
        tracing::info!(%address, "serving HTTP; Swagger UI at /swagger-ui/");
        let materialization = materialization.map(|(materializer, jobs)| Materialization {
            materializer,
            jobs,
            apply_before_answering: settings.redis.apply_before_answering,
        });
        let state = AppState {
            engine: settings.engine(),
            redis: materialization.clone(),
            metrics: if settings.telemetry.metrics {
                Some(segments_api::metrics::recorder()?)
            } else {
                None
            },
            auth: Arc::new(segments_api::auth_cache::AuthCache::new(
                Duration::from_secs(settings.http.auth_cache_secs),
            )),
            ..AppState::new(store.clone())
        };
        let server =
            segments_api::serve(listener, state, settings.http()).map_err(AppError::Http)?;
        let handle = server.handle();
        // The server runs on its own task: dropping an actix `Server` future
        // force-closes its connections, which is what a drain must not do.
        let running = tokio::spawn(server);
        let (stop, _) = watch::channel(false);
        let worker = worker_materializer.as_ref().map(|materializer| {
            tokio::spawn(segments_worker::run(
                materializer.clone(),
                settings.worker(),
                stopped(&stop),
            ))
        });
        Ok(Self {
            address,
            store,
            materialization,
            worker_materializer,
            server: handle,
            running,
            worker,
            stop,
            shutdown_timeout: Duration::from_secs(settings.worker.shutdown_timeout_secs),
        })
    }

    /// Where the API listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The store the API reads and writes through.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The API's materializer and job queue (absent with Redis disabled).
    pub fn materialization(&self) -> Option<&Materialization> {
        self.materialization.as_ref()
    }

    /// The materializer of the worker beside the API, if one runs.
    pub fn worker_materializer(&self) -> Option<&Arc<Materializer>> {
        self.worker_materializer.as_ref()
    }

    /// A future that resolves when this application is told to stop: for
    /// more worker loops that should stop with it.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        stopped(&self.stop)
    }

    /// Serves until the HTTP server ends or `shutdown` resolves, then
    /// drains (`stop`).
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        tokio::select! {
            result = &mut self.running => {
                result?.map_err(AppError::Http)?;
                Ok(())
            }
            () = shutdown => {
                tracing::info!("shutting down: draining in-flight requests and jobs");
                self.stop().await;
                Ok(())
            }
        }
    }

    /// Stops taking requests and jobs, and waits (at most
    /// `worker.shutdown_timeout_secs`) for those in flight.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let http = async {
            self.server.stop(true).await;
            let _ = self.running.await;
        };
        let jobs = async {
            if let Some(worker) = self.worker {
                let _ = worker.await;
            }
        };
        if tokio::time::timeout(self.shutdown_timeout, async { tokio::join!(http, jobs) })
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown deadline passed; unfinished jobs will be retried by another worker"
            );
        }
    }
}

fn stopped(stop: &watch::Sender<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = stop.subscribe();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}
