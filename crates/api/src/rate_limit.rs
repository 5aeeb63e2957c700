//! Per-key rate limiting (actix-governor): each authenticated API key gets
//! its own token bucket (keyed by the key's id, found by the authentication
//! middleware that runs first — so spelling the scheme `bearer` or sending
//! made-up tokens never opens a fresh bucket); requests without a key share
//! one bucket per client address, and so does every failed authentication
//! (`FailedAuth`): guessing keys is no faster than the rate limit.
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
use actix_web::{HttpMessage, HttpResponse, HttpResponseBuilder, ResponseError};

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
    /// An authenticated key, by id: the map never holds secrets.
    Key(i64),
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
        if let Some(principal) = req.extensions().get::<segments_store::Principal>() {
            return Ok(Caller::Key(principal.key_id.0));
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

/// Failed authentications, counted against the client's address in the
/// limiter's own buckets (`None` when limiting is off).
#[derive(Clone)]
pub struct FailedAuth(Option<Limiter>);

impl std::fmt::Debug for FailedAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FailedAuth")
            .field(&self.0.is_some())
            .finish()
    }
}

impl FailedAuth {
    pub fn new(on: bool, config: &Limiter) -> Self {
        Self(on.then(|| config.clone()))
    }

    /// Takes a token from `address`'s bucket for one failed attempt; past
    /// the burst, answers the seconds to wait (Retry-After).
    pub fn refuse(&self, address: Option<IpAddr>) -> Option<u64> {
        let config = self.0.as_ref()?;
        let caller = address.map_or(Caller::Exempt, Caller::Address);
        if caller == Caller::Exempt {
            return None;
        }
        let negative = config.limiter().check_key(&caller).err()?;
        let wait = negative.wait_time_from(DefaultClock::default().now());
        Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    }
}
