//! Bearer API-key authentication: the key decides the workspace.
//!
//! Authentication is a middleware around every `/v1` route, not only an
//! extractor: actix polls a handler's extractors together, so a query or
//! body extractor that fails fast answered 400/415/422 before the key was
//! even looked up. Here the key is checked before any extractor runs — an
//! unknown key always answers 401 — and the handler's `Auth` just reads the
//! principal the middleware found.

use std::future::{Ready, ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use segments_store::Principal;

use crate::AppState;
use crate::problem::ApiError;
use crate::rate_limit::FailedAuth;

/// The authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct Auth(pub Principal);

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Principal>()
                .copied()
                .map(Auth)
                .ok_or(ApiError::Unauthorized),
        )
    }
}

/// The bearer token of `Authorization` (the scheme in any case), if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Finds the workspace of a bearer token, through the cache of keys
/// authenticated lately.
async fn principal(state: &AppState, secret: Option<&str>) -> Result<Principal, ApiError> {
    let secret = secret.ok_or(ApiError::Unauthorized)?;
    if let Some(principal) = state.auth.get(secret) {
        return Ok(principal);
    }
    let principal = state
        .store
        .authenticate(secret)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    state.auth.insert(secret, principal);
    Ok(principal)
}

/// Authenticates every `/v1` request before its handler's extractors run,
/// and slows down a client address whose keys keep failing.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if !req.path().starts_with("/v1/") {
        return next.call(req).await;
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("application state missing".into()))?;
    match principal(&state, bearer(req.headers())).await {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.call(req).await
        }
        Err(ApiError::Unauthorized) => {
            // Each failure takes a token from the address's bucket: guessing
            // keys is as slow as the rate limit, whatever the tokens tried.
            if let Some(failed) = req.app_data::<web::Data<FailedAuth>>()
                && let Some(retry_after_secs) = failed.refuse(req.peer_addr().map(|a| a.ip()))
            {
                return Err(ApiError::TooManyRequests { retry_after_secs }.into());
            }
            Err(ApiError::Unauthorized.into())
        }
        Err(e) => Err(e.into()),
    }
}
