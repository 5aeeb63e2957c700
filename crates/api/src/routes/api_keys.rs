use actix_web::{HttpResponse, delete, get, post, web};
use segments_domain::{ApiKeyId, Label, Violations};

use crate::AppState;
use crate::extract::{Auth, Json};
use crate::problem::{ApiError, Problem};
use crate::wire::api_key::{ApiKey, ApiKeyInput, ApiKeyList, IssuedApiKey};

/// List the workspace's API keys (never their secrets).
#[utoipa::path(
    operation_id = "listApiKeys",
    tag = "api-keys",
    responses((status = 200, body = ApiKeyList)),
    security(("api_key" = []))
)]
#[get("/v1/api-keys")]
pub async fn list(auth: Auth, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let keys = state.store.list_api_keys(auth.0.workspace_id).await?;
    Ok(HttpResponse::Ok().json(ApiKeyList {
        items: keys.into_iter().map(ApiKey::from).collect(),
    }))
}

/// Create an API key for this workspace. The secret is in this response only.
#[utoipa::path(
    operation_id = "createApiKey",
    tag = "api-keys",
    request_body = ApiKeyInput,
    responses(
        (status = 201, body = IssuedApiKey),
        (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[post("/v1/api-keys")]
pub async fn create(
    auth: Auth,
    state: web::Data<AppState>,
    body: Json<ApiKeyInput>,
) -> Result<HttpResponse, ApiError> {
    let name = Label::parse(&body.0.name)
        .map_err(|e| ApiError::Validation(Violations::one(e.at("/name"))))?;
    let key = state
        .store
        .create_api_key(auth.0.workspace_id, &name)
        .await?;
    Ok(HttpResponse::Created().json(IssuedApiKey::from(key)))
}

/// Revoke an API key. Neither the workspace's last active key nor the key
/// sending the request can be revoked: to rotate, create a new key and
/// revoke the old one with it.
#[utoipa::path(
    operation_id = "revokeApiKey",
    tag = "api-keys",
    params(("id" = i64, Path, description = "API key id")),
    responses(
        (status = 200, body = ApiKey),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "It is the last active key, or the key sending the request")
    ),
    security(("api_key" = []))
)]
#[delete("/v1/api-keys/{id}")]
pub async fn revoke(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = ApiKeyId(id.into_inner());
    if id == auth.0.key_id {
        return Err(ApiError::Conflict {
            code: "own_key",
            message: "a key cannot revoke itself: revoke it with another key of the workspace"
                .into(),
            pointer: None,
            candidates: Vec::new(),
        });
    }
    let key = state.store.revoke_api_key(auth.0.workspace_id, id).await?;
    state.auth.clear();
    Ok(HttpResponse::Ok().json(ApiKey::from(key)))
}
