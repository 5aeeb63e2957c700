use actix_web::{HttpResponse, delete, get, post, web};

use segments_domain::{AttributeKey, Violations};

use crate::AppState;
use crate::extract::{Auth, Json};
use crate::problem::{ApiError, Problem};
use crate::wire::attribute::{Attribute, AttributeInput, AttributeList};

/// List the workspace's attribute definitions, by key.
#[utoipa::path(
    operation_id = "listAttributes",
    tag = "attributes",
    responses((status = 200, body = AttributeList)),
    security(("api_key" = []))
)]
#[get("/v1/attributes")]
pub async fn list(auth: Auth, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let items = state.store.list_attributes(auth.0.workspace_id).await?;
    Ok(HttpResponse::Ok().json(AttributeList {
        items: items.into_iter().map(Attribute::from).collect(),
    }))
}

/// Declare a custom attribute and its type (at most 200 per workspace).
#[utoipa::path(
    operation_id = "createAttribute",
    tag = "attributes",
    request_body = AttributeInput,
    responses(
        (status = 201, body = Attribute),
        (status = 409, body = Problem, description = "The key is already declared"),
        (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[post("/v1/attributes")]
pub async fn create(
    auth: Auth,
    state: web::Data<AppState>,
    body: Json<AttributeInput>,
) -> Result<HttpResponse, ApiError> {
    let key = AttributeKey::parse(&body.0.key)
        .map_err(|e| ApiError::Validation(Violations::one(e.at("/key"))))?;
    let definition = state
        .store
        .define_attribute(auth.0.workspace_id, &key, body.0.r#type.into())
        .await?;
    Ok(HttpResponse::Created().json(Attribute::from(definition)))
}

/// Delete an attribute definition and every contact's value of it. Refused
/// while a segment's conditions read the attribute.
#[utoipa::path(
    operation_id = "deleteAttribute",
    tag = "attributes",
    params(("key" = String, Path, description = "Attribute key")),
    responses(
        (status = 204), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Segments read the attribute")
    ),
    security(("api_key" = []))
)]
#[delete("/v1/attributes/{key}")]
pub async fn remove(
    auth: Auth,
    state: web::Data<AppState>,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // A key that cannot be declared names no attribute.
    if segments_domain::AttributeKey::parse(&key).is_err() {
        return Err(ApiError::NotFound {
            entity: "attribute",
            id: key.escape_debug().to_string(),
        });
    }
    // Refused by the store, inside the write, while segments read it.
    state
        .store
        .delete_attribute(auth.0.workspace_id, &key)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
