use actix_web::{HttpResponse, delete, get, patch, post, web};
use segments_domain::{TagId, TagName, Violations};

use crate::AppState;
use crate::extract::params::Query;
use crate::extract::{Auth, BulkJson, Json};
use crate::problem::{ApiError, Problem};
use crate::wire::page::{PageParams, encode_cursor};
use crate::wire::tag::{BulkTagInput, BulkTagResult, Tag, TagPage, TagRename};

/// List tags with their contact counts, in case-insensitive name order.
#[utoipa::path(
    operation_id = "listTags",
    tag = "tags",
    params(PageParams),
    responses((status = 200, body = TagPage)),
    security(("api_key" = []))
)]
#[get("/v1/tags")]
pub async fn list(
    auth: Auth,
    state: web::Data<AppState>,
    page: Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = page.limit()?;
    let after = page.position()?;
    let result = state
        .store
        .list_tags(auth.0.workspace_id, after.as_deref(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(TagPage {
        items: result.items.into_iter().map(Tag::from).collect(),
        next_cursor: result.next_after.as_deref().map(encode_cursor),
    }))
}

/// Get one tag with its contact count.
#[utoipa::path(
    operation_id = "getTag",
    tag = "tags",
    params(("id" = i64, Path, description = "Tag id")),
    responses((status = 200, body = Tag), (status = 404, body = Problem)),
    security(("api_key" = []))
)]
#[get("/v1/tags/{id}")]
pub async fn get(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let tag = state
        .store
        .get_tag(auth.0.workspace_id, TagId(id.into_inner()))
        .await?;
    Ok(HttpResponse::Ok().json(Tag::from(tag)))
}

/// Rename a tag.
#[utoipa::path(
    operation_id = "renameTag",
    tag = "tags",
    params(("id" = i64, Path, description = "Tag id")),
    request_body = TagRename,
    responses(
        (status = 200, body = Tag), (status = 404, body = Problem), (status = 409, body = Problem, description = "Another tag has that name"),
        (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[patch("/v1/tags/{id}")]
pub async fn rename(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: Json<TagRename>,
) -> Result<HttpResponse, ApiError> {
    let name = TagName::parse(&body.0.name)
        .map_err(|e| ApiError::Validation(Violations::one(e.at("/name"))))?;
    let (tag, change) = state
        .store
        .rename_tag(auth.0.workspace_id, TagId(id.into_inner()), &name)
        .await?;
    tag_changed(&state, auth.0.workspace_id, &change).await;
    Ok(HttpResponse::Ok().json(Tag::from(tag)))
}

/// Delete a tag, removing it from every contact.
#[utoipa::path(
    operation_id = "deleteTag",
    tag = "tags",
    params(("id" = i64, Path, description = "Tag id")),
    responses((status = 204), (status = 404, body = Problem)),
    security(("api_key" = []))
)]
#[delete("/v1/tags/{id}")]
pub async fn remove(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let change = state
        .store
        .delete_tag(auth.0.workspace_id, TagId(id.into_inner()))
        .await?;
    tag_changed(&state, auth.0.workspace_id, &change).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Tag up to 10,000 contacts at once, creating tags that do not exist yet.
#[utoipa::path(
    operation_id = "applyTags",
    tag = "tags",
    request_body = BulkTagInput,
    responses(
        (status = 200, body = BulkTagResult), (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[post("/v1/tags/apply")]
pub async fn apply(
    auth: Auth,
    state: web::Data<AppState>,
    body: BulkJson<BulkTagInput>,
) -> Result<HttpResponse, ApiError> {
    let (ids, tags) = body.0.parse().map_err(ApiError::Validation)?;
    let outcome = state
        .store
        .retag_contacts(auth.0.workspace_id, &ids, &tags, &[])
        .await?;
    state
        .contacts_changed(auth.0.workspace_id, &outcome.contacts, &outcome.touched)
        .await;
    Ok(HttpResponse::Ok().json(BulkTagResult::from(outcome)))
}

/// Untag up to 10,000 contacts at once.
#[utoipa::path(
    operation_id = "removeTags",
    tag = "tags",
    request_body = BulkTagInput,
    responses(
        (status = 200, body = BulkTagResult), (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[post("/v1/tags/remove")]
pub async fn unapply(
    auth: Auth,
    state: web::Data<AppState>,
    body: BulkJson<BulkTagInput>,
) -> Result<HttpResponse, ApiError> {
    let (ids, tags) = body.0.parse().map_err(ApiError::Validation)?;
    let outcome = state
        .store
        .retag_contacts(auth.0.workspace_id, &ids, &[], &tags)
        .await?;
    state
        .contacts_changed(auth.0.workspace_id, &outcome.contacts, &outcome.touched)
        .await;
    Ok(HttpResponse::Ok().json(BulkTagResult::from(outcome)))
}

/// A tag renamed or deleted under `change.contacts`: their memberships are
/// applied before the answer, as a bulk tagging's are, when there are no
/// more of them than one bulk write may carry — so reads after the answer
/// reflect it. A tag on more contacts rebuilds the segments that read tags
/// through the queue instead (evaluating that many contacts inline would
/// hold the request for seconds); until those rebuilds land, reads of such
/// segments lag the rename.
async fn tag_changed(
    state: &AppState,
    ws: segments_domain::WorkspaceId,
    change: &segments_store::TagChange,
) {
    if change.contacts.len() <= segments_domain::limits::MAX_BULK_TAG_CONTACTS {
        state
            .contacts_changed(ws, &change.contacts, &change.touched)
            .await;
    } else {
        state.rebuild_reading(ws, vec![tags_key()]).await;
    }
}

fn tags_key() -> String {
    segments_conditions::DataRef::Tags.change_key()
}
