//! Prometheus metrics: the process-wide recorder, the HTTP middleware that
//! times every request, and the `/metrics` endpoint.
//!
//! The libraries record through the `metrics` facade; this module installs
//! the one Prometheus recorder of the process and renders its exposition.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use metrics::{Unit, describe_histogram, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use segments_worker::JobQueue;

pub const HTTP_DURATION: &str = "http_server_request_duration_seconds";

/// Latency buckets, in seconds: from a cached read to a slow preview.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("installing the Prometheus recorder: {0}")]
    Build(#[from] BuildError),
    #[error("starting the metrics upkeep thread: {0}")]
    Upkeep(#[from] std::io::Error),
}

/// The process's Prometheus recorder, installed on first call. Tests start
/// many apps in one process: they all share it.
pub fn recorder() -> Result<PrometheusHandle, MetricsError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    static INSTALL: Mutex<()> = Mutex::new(());
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let _guard = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)?
        .install_recorder()?;
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP requests by method, route template and status."
    );
    segments_worker::metrics::describe();
    let upkeep = handle.clone();
    // Histograms are folded in by upkeep; a scrape also runs it, this keeps
    // memory flat when nobody scrapes.
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        })?;
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}

/// Times each request under its route template (`/v1/segments/{id}`), never
/// its raw path, so the number of series stays bounded.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let response = next.call(req).await;
    let (route, status) = match &response {
        Ok(res) => (
            res.request()
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_owned()),
            res.status().as_u16(),
        ),
        Err(e) => (
            "unmatched".to_owned(),
            e.as_response_error().status_code().as_u16(),
        ),
    };
    histogram!(HTTP_DURATION, "method" => method, "route" => route, "status" => status.to_string())
        .record(started.elapsed().as_secs_f64());
    response
}

/// What `/metrics` renders.
#[derive(Debug, Clone)]
pub struct Exposition {
    pub handle: PrometheusHandle,
    /// Read at scrape time for the queue-depth gauge.
    pub jobs: Option<JobQueue>,
}

/// `GET /metrics`: the Prometheus text exposition. Not authenticated, like
/// `/healthz`: expose it only where your scraper can reach it.
pub async fn expose(exposition: web::Data<Exposition>) -> HttpResponse {
    if let Some(jobs) = &exposition.jobs
        && let Err(e) = jobs.depth().await
    {
        tracing::debug!(error = %e, "queue depth not read");
    }
    exposition.handle.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(exposition.handle.render())
}
