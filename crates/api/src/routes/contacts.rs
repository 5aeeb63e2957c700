use actix_web::{HttpResponse, delete, get, patch, post, web};
use segments_domain::ContactId;

use crate::AppState;
use crate::extract::params::Query;
use crate::extract::{Auth, BulkJson, Json};
use crate::problem::{ApiError, Problem};
use crate::wire::contact::{
    BatchGetInput, BatchGetResult, BulkUpsertInput, BulkUpsertResult, Contact, ContactInput,
    ContactPage,
};
use crate::wire::page::{PageParams, encode_cursor};

/// Create a contact.
#[utoipa::path(
    operation_id = "createContact",
    tag = "contacts",
    request_body = ContactInput,
    responses(
        (status = 201, body = Contact),
        (status = 409, body = Problem, description = "The external_id is taken"),
        (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[post("/v1/contacts")]
pub async fn create(
    auth: Auth,
    state: web::Data<AppState>,
    body: Json<ContactInput>,
) -> Result<HttpResponse, ApiError> {
    let patch = body.0.into_patch().map_err(ApiError::Validation)?;
    let written = state
        .store
        .create_contact(auth.0.workspace_id, &patch)
        .await?;
    state.contact_written(auth.0.workspace_id, &written).await;
    Ok(HttpResponse::Created().json(Contact::from(written.contact)))
}

/// List contacts in creation order, a page at a time.
#[utoipa::path(
    operation_id = "listContacts",
    tag = "contacts",
    params(PageParams),
    responses((status = 200, body = ContactPage)),
    security(("api_key" = []))
)]
#[get("/v1/contacts")]
pub async fn list(
    auth: Auth,
    state: web::Data<AppState>,
    page: Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = page.limit()?;
    let after = page.after_id()?.map(ContactId);
    let result = state
        .store
        .list_contacts(auth.0.workspace_id, after, limit)
        .await?;
    Ok(HttpResponse::Ok().json(ContactPage {
        items: result.items.into_iter().map(Contact::from).collect(),
        next_cursor: result.next_after.map(|id| encode_cursor(&id.0.to_string())),
    }))
}

/// Get one contact.
#[utoipa::path(
    operation_id = "getContact",
    tag = "contacts",
    params(("id" = i64, Path, description = "Contact id")),
    responses((status = 200, body = Contact), (status = 404, body = Problem)),
    security(("api_key" = []))
)]
#[get("/v1/contacts/{id}")]
pub async fn get(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let contact = state
        .store
        .get_contact(auth.0.workspace_id, ContactId(id.into_inner()))
        .await?;
    Ok(HttpResponse::Ok().json(Contact::from(contact)))
}

/// Update a contact: absent fields are left alone, `null` clears a field.
#[utoipa::path(
    operation_id = "updateContact",
    tag = "contacts",
    params(("id" = i64, Path, description = "Contact id")),
    request_body = ContactInput,
    responses(
        (status = 200, body = Contact),
        (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[patch("/v1/contacts/{id}")]
pub async fn update(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: Json<ContactInput>,
) -> Result<HttpResponse, ApiError> {
    let patch = body.0.into_patch().map_err(ApiError::Validation)?;
    let written = state
        .store
        .update_contact(auth.0.workspace_id, ContactId(id.into_inner()), &patch)
        .await?;
    state.contact_written(auth.0.workspace_id, &written).await;
    Ok(HttpResponse::Ok().json(Contact::from(written.contact)))
}

/// Delete a contact.
#[utoipa::path(
    operation_id = "deleteContact",
    tag = "contacts",
    params(("id" = i64, Path, description = "Contact id")),
    responses((status = 204), (status = 404, body = Problem)),
    security(("api_key" = []))
)]
#[delete("/v1/contacts/{id}")]
pub async fn remove(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = ContactId(id.into_inner());
    let deleted = state.store.delete_contact(auth.0.workspace_id, id).await?;
    state
        .contact_deleted(auth.0.workspace_id, id, &deleted)
        .await;
    Ok(HttpResponse::NoContent().finish())
}

/// Get up to 1,000 contacts by id in one call.
#[utoipa::path(
    operation_id = "batchGetContacts",
    tag = "contacts",
    request_body = BatchGetInput,
    responses(
        (status = 200, body = BatchGetResult),
        (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[post("/v1/contacts/batch-get")]
pub async fn batch_get(
    auth: Auth,
    state: web::Data<AppState>,
    body: Json<BatchGetInput>,
) -> Result<HttpResponse, ApiError> {
    let ids = body.0.parse().map_err(ApiError::Validation)?;
    let found = state.store.get_contacts(auth.0.workspace_id, &ids).await?;
    let found_ids: std::collections::HashSet<i64> = found.iter().map(|c| c.id.0).collect();
    Ok(HttpResponse::Ok().json(BatchGetResult {
        missing: ids
            .iter()
            .map(|id| id.0)
            .filter(|id| !found_ids.contains(id))
            .collect(),
        items: found.into_iter().map(Contact::from).collect(),
    }))
}

/// Create or update up to 10,000 contacts by `external_id`.
///
/// Each item is applied like a PATCH to the contact with that external id, or
/// creates it. Valid items are stored; each invalid one is reported with its
/// index and reason, and the others are stored all the same.
#[utoipa::path(
    operation_id = "bulkUpsertContacts",
    tag = "contacts",
    request_body = BulkUpsertInput,
    responses(
        (status = 200, body = BulkUpsertResult),
        (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[post("/v1/contacts/bulk-upsert")]
pub async fn bulk_upsert(
    auth: Auth,
    state: web::Data<AppState>,
    body: BulkJson<BulkUpsertInput>,
) -> Result<HttpResponse, ApiError> {
    let batch = body.0.into_patches().map_err(ApiError::Validation)?;
    let outcome = state
        .store
        .upsert_contacts(auth.0.workspace_id, &batch.items)
        .await?;
    state
        .contacts_changed(auth.0.workspace_id, &outcome.contacts(), &outcome.touched)
        .await;
    Ok(HttpResponse::Ok().json(BulkUpsertResult::new(outcome, batch.rejected)))
}
