//! Tags and attribute values of one contact.

use actix_web::{HttpResponse, delete, post, put, web};
use segments_domain::{AttributeKey, ContactId, ContactPatch, TagName, Violations};

use crate::AppState;
use crate::extract::{Auth, Json};
use crate::problem::{ApiError, Problem};
use crate::wire::attribute::AttributeValueInput;
use crate::wire::contact::Contact;
use crate::wire::tag::TagNames;

async fn apply(
    auth: Auth,
    state: &AppState,
    id: i64,
    patch: ContactPatch,
) -> Result<HttpResponse, ApiError> {
    let written = state
        .store
        .update_contact(auth.0.workspace_id, ContactId(id), &patch)
        .await?;
    state.contact_written(auth.0.workspace_id, &written).await;
    Ok(HttpResponse::Ok().json(Contact::from(written.contact)))
}

/// Add tags to a contact, creating tags that do not exist yet.
#[utoipa::path(
    operation_id = "addContactTags",
    tag = "contacts",
    params(("id" = i64, Path, description = "Contact id")),
    request_body = TagNames,
    responses(
        (status = 200, body = Contact), (status = 404, body = Problem), (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[post("/v1/contacts/{id}/tags")]
pub async fn add_tags(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: Json<TagNames>,
) -> Result<HttpResponse, ApiError> {
    let add_tags = body.0.parse().map_err(ApiError::Validation)?;
    let patch = ContactPatch {
        add_tags,
        ..ContactPatch::default()
    };
    apply(auth, &state, id.into_inner(), patch).await
}

/// Remove tags from a contact (names it does not carry are ignored).
#[utoipa::path(
    operation_id = "removeContactTags",
    tag = "contacts",
    params(("id" = i64, Path, description = "Contact id")),
    request_body = TagNames,
    responses(
        (status = 200, body = Contact), (status = 404, body = Problem), (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[post("/v1/contacts/{id}/tags/remove")]
pub async fn remove_tags(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: Json<TagNames>,
) -> Result<HttpResponse, ApiError> {
    let remove_tags = body.0.parse().map_err(ApiError::Validation)?;
    let patch = ContactPatch {
        remove_tags,
        ..ContactPatch::default()
    };
    apply(auth, &state, id.into_inner(), patch).await
}

/// Remove one tag from a contact.
#[utoipa::path(
    operation_id = "removeContactTag",
    tag = "contacts",
    params(("id" = i64, Path, description = "Contact id"), ("tag" = String, Path, description = "Tag name")),
    responses(
        (status = 200, body = Contact), (status = 404, body = Problem), (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[delete("/v1/contacts/{id}/tags/{tag}")]
pub async fn remove_tag(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, tag) = path.into_inner();
    let tag = TagName::parse(&tag).map_err(|e| ApiError::InvalidParameter {
        name: "tag".into(),
        message: e.message,
    })?;
    let patch = ContactPatch {
        remove_tags: vec![tag],
        ..ContactPatch::default()
    };
    apply(auth, &state, id, patch).await
}

fn attribute_key(raw: &str) -> Result<AttributeKey, ApiError> {
    AttributeKey::parse(raw).map_err(|e| ApiError::InvalidParameter {
        name: "key".into(),
        message: e.message,
    })
}

/// Set one attribute value on a contact.
#[utoipa::path(
    operation_id = "setContactAttribute",
    tag = "contacts",
    params(("id" = i64, Path, description = "Contact id"), ("key" = String, Path, description = "Attribute key")),
    request_body = AttributeValueInput,
    responses(
        (status = 200, body = Contact), (status = 404, body = Problem), (status = 422, body = Problem, description = "Undeclared attribute or a value of the wrong type")
    ),
    security(("api_key" = []))
)]
#[put("/v1/contacts/{id}/attributes/{key}")]
pub async fn set_attribute(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<(i64, String)>,
    body: Json<AttributeValueInput>,
) -> Result<HttpResponse, ApiError> {
    let (id, key) = path.into_inner();
    let key = attribute_key(&key)?;
    let mut patch = ContactPatch::default();
    patch.attributes.insert(key, Some(body.0.value.into_json()));
    apply(auth, &state, id, patch).await.map_err(value_pointer)
}

/// The store reports attribute errors at `/attributes/<key>`; in this route's
/// body the value sits at `/value`.
fn value_pointer(err: ApiError) -> ApiError {
    match err {
        ApiError::Validation(v) => ApiError::Validation(Violations::from_iter(
            v.into_vec().into_iter().map(|mut v| {
                v.pointer = "/value".into();
                v
            }),
        )),
        other => other,
    }
}

/// Unset one attribute value on a contact.
#[utoipa::path(
    operation_id = "unsetContactAttribute",
    tag = "contacts",
    params(("id" = i64, Path, description = "Contact id"), ("key" = String, Path, description = "Attribute key")),
    responses(
        (status = 200, body = Contact), (status = 404, body = Problem), (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[delete("/v1/contacts/{id}/attributes/{key}")]
pub async fn unset_attribute(
    auth: Auth,
    state: web::Data<AppState>,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, key) = path.into_inner();
    let mut patch = ContactPatch::default();
    patch.attributes.insert(attribute_key(&key)?, None);
    apply(auth, &state, id, patch).await
}
