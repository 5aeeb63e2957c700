//! Per-key rate limiting (actix-governor): each API key gets its own token
//! bucket; requests without a key share one bucket per client address.
//! Probes and the metrics scrape are never limited.
//!
//! Buckets live in this process: with N API processes behind a balancer a
//! key may reach N times the rate. That is the usual trade for not making
//! every request wait on a shared store.

use std::net::IpAddr;
use std::time::Duration;

use actix_governor::governor::NotUntil;
use actix_governor::governor::clock::{Clock, DefaultClock, QuantaInstant};
use actix_governor::governor::middleware::NoOpMiddleware;
use actix_governor::{Governor, GovernorConfig, GovernorConfigBuilder, KeyExtractor};
use actix_web::dev::ServiceRequest;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use sha2::{Digest, Sha256};

use crate::problem::ApiError;

/// A sustained rate and a burst, per API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests_per_second: u32,
    pub burst: u32,
}

/// Who a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// A digest of the bearer token: the map never holds secrets.
    Key([u8; 16]),
    Address(IpAddr),
    /// Probes and scrapes.
    Exempt,
}

/// Paths an orchestrator or scraper polls; limiting them would turn a busy
/// client into a failed health check.
const EXEMPT: &[&str] = &["/healthz", "/readyz", "/metrics"];

#[derive(Debug, Clone, Copy)]
pub struct ByApiKey;

impl KeyExtractor for ByApiKey {
    type Key = Caller;
    type KeyExtractionError = ApiError;

    fn extract(&self, req: &ServiceRequest) -> Result<Caller, ApiError> {
        if EXEMPT.contains(&req.path()) {
            return Ok(Caller::Exempt);
        }
        let bearer = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        if let Some(token) = bearer {
            let digest = Sha256::digest(token.as_bytes());
            let mut key = [0u8; 16];
            key.copy_from_slice(&digest[..16]);
            return Ok(Caller::Key(key));
        }
        // Without a peer address (a Unix socket) everyone shares one bucket.
        Ok(req
            .peer_addr()
            .map_or(Caller::Exempt, |addr| Caller::Address(addr.ip())))
    }

    fn exceed_rate_limit_response(
        &self,
        negative: &NotUntil<QuantaInstant>,
        _response: HttpResponseBuilder,
    ) -> HttpResponse {
        let wait = negative.wait_time_from(DefaultClock::default().now());
        // Retry-After counts whole seconds; rounding down to 0 would invite
        // an immediate retry that fails again.
        let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError::TooManyRequests { retry_after_secs }.error_response()
    }

    fn whitelisted_keys(&self) -> Vec<Caller> {
        vec![Caller::Exempt]
    }
}

pub type Limiter = GovernorConfig<ByApiKey, NoOpMiddleware>;

/// The limiter for `limit`, and whether it is on: `None`, a zero rate or a
/// zero burst turn limiting off (the middleware is then skipped).
pub fn limiter(limit: Option<RateLimit>) -> std::io::Result<(bool, Limiter)> {
    let (on, limit) = match limit {
        Some(l) if l.requests_per_second > 0 && l.burst > 0 => (true, l),
        _ => (
            false,
            RateLimit {
                requests_per_second: 1,
                burst: 1,
            },
        ),
    };
    let period = Duration::from_secs(1) / limit.requests_per_second;
    let config = GovernorConfigBuilder::default()
        .period(period)
        .burst_size(limit.burst)
        .key_extractor(ByApiKey)
        .finish()
        .ok_or_else(|| std::io::Error::other("the rate limit needs a positive rate and burst"))?;
    if on {
        // Buckets of callers gone quiet are dropped now and then, so that
        // random tokens cannot grow the map without bound.
        let limiter = std::sync::Arc::downgrade(&config.limiter());
        std::thread::Builder::new()
            .name("rate-limit-gc".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(60));
                    // The server is gone once nobody else holds the limiter.
                    let Some(limiter) = limiter.upgrade() else {
                        return;
                    };
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
            })?;
    }
    Ok((on, config))
}

pub fn middleware(config: &Limiter) -> Governor<ByApiKey, NoOpMiddleware> {
    Governor::new(config)
}
