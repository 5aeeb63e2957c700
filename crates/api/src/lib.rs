//! Segments' HTTP API: actix-web handlers, wire types, problem+json errors and
//! the OpenAPI document. The only crate that knows HTTP.

pub mod auth_cache;
pub mod extract;
pub mod membership;
pub mod metrics;
pub mod openapi;
mod openapi_bounds;
mod openapi_conditions;
pub mod problem;
pub mod rate_limit;
mod request_span;
pub mod routes;
pub mod wire;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, middleware, web};
use metrics_exporter_prometheus::PrometheusHandle;
use segments_conditions::Limits;
use segments_domain::{ContactId, SegmentId, WorkspaceId};
use segments_store::Store;
use segments_worker::{JobQueue, Materializer};
use utoipa_swagger_ui::SwaggerUi;

pub use extract::BodyLimit;
use problem::ApiError;
pub use rate_limit::RateLimit;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database, and through it the one registry of condition types.
    pub store: Store,
    pub engine: EngineSettings,
    /// The materializer, when Redis is configured.
    pub redis: Option<Materialization>,
    /// The Prometheus recorder `/metrics` renders, when installed.
    pub metrics: Option<PrometheusHandle>,
    /// Keys authenticated lately (see `auth_cache`).
    pub auth: Arc<auth_cache::AuthCache>,
}

/// How long an authenticated key is trusted without reading the database
/// again, unless configured otherwise.
pub const DEFAULT_AUTH_CACHE_TTL: Duration = Duration::from_secs(5);

/// Access to the materialized sets and the job queue.
#[derive(Debug, Clone)]
pub struct Materialization {
    pub materializer: Arc<Materializer>,
    pub jobs: JobQueue,
    /// Whether writes apply their changes before answering (read your
    /// writes) or only queue them (`redis.apply_before_answering`).
    pub apply_before_answering: bool,
}

impl Materialization {
    /// Brings the sets up to date with `contacts`' current state, as the
    /// queued job would (same evaluation, same version guard), within
    /// [`INLINE_APPLY_TIMEOUT`] per 1,000 contacts. `false` when it did not
    /// (turned off, Redis or the database failing, too slow): the caller
    /// queues the change. The apply runs on a task of its own, so that a
    /// write that stops waiting never cancels it halfway.
    async fn apply_inline(
        &self,
        ws: WorkspaceId,
        contacts: &[ContactId],
        known: HashMap<ContactId, segments_store::ChangeStamp>,
        changed: &[String],
    ) -> bool {
        if contacts.is_empty() {
            return true;
        }
        if !self.apply_before_answering {
            return false;
        }
        let budget = INLINE_APPLY_TIMEOUT
            * u32::try_from(contacts.len().div_ceil(1_000)).unwrap_or(u32::MAX);
        let materializer = self.materializer.clone();
        let contacts = contacts.to_vec();
        let changed = changed.to_vec();
        within(budget, async move {
            materializer
                .contacts_changed_at(ws, &contacts, &known, &changed, "write")
                .await
        })
        .await
    }

    /// As [`Materialization::apply_inline`] for one contact whose state
    /// after the write is in hand: evaluated as it is, not read back.
    async fn apply_written(
        &self,
        ws: WorkspaceId,
        written: &segments_store::Written,
        changed: &[String],
    ) -> bool {
        if !self.apply_before_answering {
            return false;
        }
        let materializer = self.materializer.clone();
        let changed = changed.to_vec();
        let (contact, version, catalog_version) = (
            written.contact.clone(),
            written.version,
            written.catalog_version,
        );
        within(INLINE_APPLY_TIMEOUT, async move {
            materializer
                .contact_written(ws, contact, version, catalog_version, &changed, "write")
                .await
        })
        .await
    }
}

/// Runs an inline apply on a task of its own, waiting for it up to
/// `budget`: whether it finished and succeeded. A write that stops waiting
/// never cancels the apply halfway.
async fn within(
    budget: Duration,
    apply: impl std::future::Future<Output = Result<(), segments_worker::WorkerError>> + Send + 'static,
) -> bool {
    match tokio::time::timeout(budget, tokio::spawn(apply)).await {
        Ok(Ok(Ok(()))) => true,
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "membership not applied before answering; queued");
            false
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "inline membership apply panicked; queued");
            false
        }
        Err(_) => {
            tracing::warn!(
                timeout = ?budget,
                "membership apply too slow to wait for; queued"
            );
            false
        }
    }
}

impl AppState {
    /// State with default engine settings.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            engine: EngineSettings::default(),
            redis: None,
            metrics: None,
            auth: Arc::new(auth_cache::AuthCache::new(DEFAULT_AUTH_CACHE_TTL)),
        }
    }
}

/// How long a write waits for its inline apply, per 1,000 contacts (one
/// evaluation batch: one snapshot read, one pipelined round trip), before
/// answering anyway and leaving the change to the queue (Redis or the
/// database slow or away).
pub const INLINE_APPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Telling the materializer about writes. A write applies its membership
/// changes to Redis before it answers, so that every read after the answer
/// sees them; if that fails, the change is queued. Every call is best-effort: a job that cannot be
/// enqueued is logged, and the write reaches Redis through the change log
/// and the reconciler instead.
impl AppState {
    /// Many contacts' write: the contacts and what the store recorded it
    /// touched (`BulkOutcome`, `BulkTagOutcome`, `TagChange`,
    /// `MembershipChange`).
    pub async fn contacts_changed(
        &self,
        ws: WorkspaceId,
        contacts: &[ContactId],
        touched: &[String],
    ) {
        if let Some(redis) = &self.redis
            && !redis
                .apply_inline(ws, contacts, HashMap::new(), touched)
                .await
        {
            redis
                .jobs
                .contacts_changed(ws, contacts, touched.to_vec())
                .await;
        }
    }

    /// One contact's write, as the store reports it: its state after the
    /// write, the version it gave the contact, the catalog version it read
    /// and what it touched.
    pub async fn contact_written(&self, ws: WorkspaceId, written: &segments_store::Written) {
        if let Some(redis) = &self.redis
            && !redis.apply_written(ws, written, &written.touched).await
        {
            redis
                .jobs
                .contact_changed(
                    ws,
                    written.contact.id,
                    written.version,
                    written.touched.clone(),
                )
                .await;
        }
    }

    /// One contact's deletion (no state after it), as the store reports
    /// it: the version it gave the contact and what it touched.
    pub async fn contact_deleted(
        &self,
        ws: WorkspaceId,
        contact: ContactId,
        deleted: &segments_store::Deleted,
    ) {
        if let Some(redis) = &self.redis
            && !redis
                .apply_inline(
                    ws,
                    &[contact],
                    HashMap::from([(contact, deleted.version)]),
                    &deleted.touched,
                )
                .await
        {
            redis
                .jobs
                .contact_changed(ws, contact, deleted.version, deleted.touched.clone())
                .await;
        }
    }

    pub async fn rebuild(&self, ws: WorkspaceId, segment: SegmentId) {
        if let Some(redis) = &self.redis {
            redis.jobs.rebuild(ws, segment).await;
        }
    }

    pub async fn rebuild_reading(&self, ws: WorkspaceId, changed: Vec<String>) {
        if let Some(redis) = &self.redis {
            redis
                .jobs
                .push_or_log(segments_worker::Job::RebuildReading {
                    workspace_id: ws.0,
                    changed,
                })
                .await;
        }
    }

    pub async fn forget_segment(&self, ws: WorkspaceId, segment: SegmentId) {
        if let Some(redis) = &self.redis
            && let Err(e) = redis.materializer.forget_segment(ws, segment).await
        {
            tracing::warn!(error = %e, "segment keys not deleted; the reconciler will remove them");
        }
    }
}

/// Bounds on condition trees. (Bounds on their evaluation — time,
/// connections — are the store's: `segments_store::AnalyticsSettings`.)
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineSettings {
    pub limits: Limits,
}

/// HTTP limits.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    /// Largest body of an ordinary request.
    pub max_body_bytes: usize,
    /// Largest body of the bulk routes (10,000 contacts).
    pub max_bulk_body_bytes: usize,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Per-API-key request rate; `None` turns limiting off.
    pub rate_limit: Option<RateLimit>,
    /// How long a graceful stop waits for in-flight requests.
    pub shutdown_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_bulk_body_bytes: 32 * 1024 * 1024,
            workers: 0,
            rate_limit: None,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// Registers every route, with its limits and error handlers.
pub fn configure(
    state: web::Data<AppState>,
    http: HttpSettings,
) -> impl Fn(&mut web::ServiceConfig) + Clone {
    // The document of this process's registry, so that a plugin it
    // registered is documented where it is accepted.
    let spec = Arc::new(openapi::document_for(state.store.registry()));
    move |cfg: &mut web::ServiceConfig| {
        let served = spec.clone();
        cfg.app_data(state.clone())
            .app_data(BodyLimit {
                default: http.max_body_bytes,
                bulk: http.max_bulk_body_bytes,
            })
            .app_data(extract::params::path_config())
            .route(
                "/openapi.json",
                web::get().to(move || {
                    let spec = served.clone();
                    async move { HttpResponse::Ok().json(&*spec) }
                }),
            )
            .route(
                "/swagger-ui",
                web::get().to(|| async {
                    HttpResponse::PermanentRedirect()
                        .insert_header(("Location", "/swagger-ui/"))
                        .finish()
                }),
            )
            .service(
                SwaggerUi::new("/swagger-ui/{_:.*}")
                    .external_urls_from_iter_unchecked([("/openapi.json", (*spec).clone())]),
            )
            .configure(routes::register);
    }
}

async fn no_route(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    // actix answers 404 both for unknown paths and for known paths with the
    // wrong method; tell them apart for the client.
    match openapi::allowed_methods(req.path()) {
        Some(methods) if !methods.iter().any(|m| m == req.method().as_str()) => {
            Err(ApiError::MethodNotAllowed {
                allow: methods.join(", "),
            })
        }
        _ => Err(ApiError::NoRoute),
    }
}

/// Starts the HTTP server on an already bound listener (port 0 in tests).
pub fn serve(
    listener: TcpListener,
    state: AppState,
    http: HttpSettings,
) -> std::io::Result<Server> {
    let exposition = state.metrics.clone().map(|handle| {
        web::Data::new(metrics::Exposition {
            handle,
            jobs: state.redis.as_ref().map(|r| r.jobs.clone()),
        })
    });
    let (limited, limiter) = rate_limit::limiter(http.rate_limit)?;
    let failed_auth = web::Data::new(rate_limit::FailedAuth::new(limited, &limiter));
    let state = web::Data::new(state);
    let routes = configure(state, http);
    let mut server = HttpServer::new(move || {
        let mut app = App::new()
            // actix runs the last registered middleware first, so from the
            // outside in: the trace spans the whole request, the latency
            // histogram counts every answer (401 and 429 too), the key is
            // authenticated, then limited by its id.
            .wrap(middleware::Condition::new(
                limited,
                rate_limit::middleware(&limiter),
            ))
            .wrap(middleware::from_fn(extract::auth::authenticate))
            .wrap(middleware::from_fn(metrics::track))
            .wrap(tracing_actix_web::TracingLogger::<request_span::RedactedSpan>::new())
            .app_data(failed_auth.clone())
            .configure(routes.clone());
        if let Some(exposition) = &exposition {
            app = app
                .app_data(exposition.clone())
                .route("/metrics", web::get().to(metrics::expose));
        }
        app.default_service(web::to(no_route))
    })
    .listen(listener)?;
    server = server.shutdown_timeout(http.shutdown_timeout.as_secs());
    if http.workers > 0 {
        server = server.workers(http.workers);
    }
    Ok(server.disable_signals().run())
}

/// A server for worker-only processes: `/metrics` and `/healthz`, nothing
/// else, so their jobs and rebuilds can be scraped too.
pub fn metrics_server(
    listener: TcpListener,
    exposition: metrics::Exposition,
) -> std::io::Result<Server> {
    let exposition = web::Data::new(exposition);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(exposition.clone())
            .route("/metrics", web::get().to(metrics::expose))
            .service(routes::health::healthz)
            .default_service(web::to(no_route))
    })
    .workers(1)
    .listen(listener)?;
    Ok(server.disable_signals().run())
}
