//! Bearer API-key authentication: the key decides the workspace.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use segments_store::Principal;

use crate::AppState;
use crate::problem::ApiError;

/// The authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct Auth(pub Principal);

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let secret = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_owned())
            });
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Internal("application state missing".into()))?;
            let secret = secret.ok_or(ApiError::Unauthorized)?;
            if let Some(principal) = state.auth.get(&secret) {
                return Ok(Auth(principal));
            }
            let principal = state
                .store
                .authenticate(&secret)
                .await?
                .ok_or(ApiError::Unauthorized)?;
            state.auth.insert(&secret, principal);
            Ok(Auth(principal))
        })
    }
}
