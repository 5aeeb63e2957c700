use std::time::Duration;

use actix_web::{HttpResponse, delete, get, patch, post, web};
use segments_conditions::sql::SqlExpr;
use segments_conditions::{EvalContext, SegmentSql, Tree};
use segments_domain::contact::parse_name;
use segments_domain::limits::{MAX_BULK_TAG_CONTACTS, MAX_MEMBER_NAMES};
use segments_domain::{ContactId, FieldError, SegmentId, Timestamp, Violations};
use segments_store::{Catalog, SegmentRule};

use crate::AppState;
use crate::extract::params::Query;
use crate::extract::{Auth, BulkJson, Json};
use crate::membership;
use crate::problem::{ApiError, Problem};
use crate::wire::contact::Contact;
use crate::wire::page::{PageParams, encode_cursor};
use crate::wire::segment::{
    ConditionType, ConditionTypeList, ExplainParams, ExplainResult, MembersInput, MembersResult,
    PreviewInput, PreviewResult, RebuildAccepted, Segment, SegmentInput, SegmentPage, SegmentPatch,
    SnapshotCreated, SnapshotInput,
};

/// Most names resolved in one membership call.
/// Largest preview sample.
const MAX_PREVIEW: u64 = 100;

pub(crate) async fn catalog(
    state: &AppState,
    auth: &Auth,
) -> Result<std::sync::Arc<Catalog>, ApiError> {
    Ok(state.store.catalog(auth.0.workspace_id).await?)
}

/// Validates a tree found at `/conditions` of the request body.
pub(crate) fn parse_conditions(
    state: &AppState,
    catalog: &Catalog,
    value: &serde_json::Value,
    current: Option<SegmentId>,
) -> Result<Tree, ApiError> {
    catalog
        .parse(value, state.store.registry(), state.engine.limits, current)
        .map_err(|v| ApiError::Validation(v.prefixed("/conditions")))
}

fn name(raw: &str) -> Result<String, ApiError> {
    parse_name(raw).map_err(|e| ApiError::Validation(Violations::one(e.at("/name"))))
}

async fn present(
    state: &AppState,
    catalog: &Catalog,
    record: segments_store::SegmentRecord,
) -> Result<Segment, ApiError> {
    let count = membership::count(state, catalog, record.id).await?;
    let problem = catalog.broken.get(&record.id).map(ToString::to_string);
    Ok(Segment::new(record, count, problem))
}

/// List the registered condition types, with their parameter schemas.
#[utoipa::path(
    operation_id = "listConditionTypes",
    tag = "segments",
    responses((status = 200, body = ConditionTypeList)),
    security(("api_key" = []))
)]
#[get("/v1/condition-types")]
pub async fn condition_types(_auth: Auth, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(ConditionTypeList {
        items: state
            .store
            .registry()
            .list()
            .into_iter()
            .map(ConditionType::from)
            .collect(),
    })
}

/// Create a static or dynamic segment.
#[utoipa::path(
    operation_id = "createSegment",
    tag = "segments",
    request_body = SegmentInput,
    responses(
        (status = 201, body = Segment), (status = 422, body = Problem, description = "Invalid conditions, with the JSON Pointer of the offending node")
    ),
    security(("api_key" = []))
)]
#[post("/v1/segments")]
pub async fn create(
    auth: Auth,
    state: web::Data<AppState>,
    body: Json<SegmentInput>,
) -> Result<HttpResponse, ApiError> {
    let input = body.0;
    let name = name(input.name())?;
    let rule = match input {
        SegmentInput::Static { .. } => SegmentRule::Static,
        // The tree is validated by the store, inside the write.
        SegmentInput::Dynamic { conditions, .. } => SegmentRule::Dynamic(conditions.0),
    };
    let record = state
        .store
        .create_segment(auth.0.workspace_id, &name, &rule, state.engine.limits)
        .await?;
    state.rebuild(auth.0.workspace_id, record.id).await;
    let catalog = self::catalog(&state, &auth).await?;
    Ok(HttpResponse::Created().json(present(&state, &catalog, record).await?))
}

/// List segments with their member counts.
#[utoipa::path(
    operation_id = "listSegments",
    tag = "segments",
    params(PageParams),
    responses((status = 200, body = SegmentPage)),
    security(("api_key" = []))
)]
#[get("/v1/segments")]
pub async fn list(
    auth: Auth,
    state: web::Data<AppState>,
    page: Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = page.limit()?.min(100);
    let after = page.after_id()?.map(SegmentId);
    let result = state
        .store
        .list_segments(auth.0.workspace_id, after, limit)
        .await?;
    let catalog = catalog(&state, &auth).await?;
    // Counted in SQL (no Redis, or Redis down), a page of segments could
    // take one query timeout per segment: those not begun within one
    // timeout are left uncounted. Read from Redis, none comes near it.
    let budget = std::time::Instant::now() + state.store.query_timeout();
    let mut items = Vec::with_capacity(result.items.len());
    for record in result.items {
        let count = if std::time::Instant::now() > budget {
            membership::uncounted()
        } else {
            membership::count(&state, &catalog, record.id).await?
        };
        let problem = catalog.broken.get(&record.id).map(ToString::to_string);
        items.push(Segment::new(record, count, problem));
    }
    Ok(HttpResponse::Ok().json(SegmentPage {
        items,
        next_cursor: result.next_after.map(|id| encode_cursor(&id.0.to_string())),
    }))
}

/// Get a segment with its member count.
#[utoipa::path(
    operation_id = "getSegment",
    tag = "segments",
    params(("id" = i64, Path, description = "Segment id")),
    responses((status = 200, body = Segment), (status = 404, body = Problem)),
    security(("api_key" = []))
)]
#[get("/v1/segments/{id}")]
pub async fn get(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let record = state
        .store
        .get_segment(auth.0.workspace_id, SegmentId(*id))
        .await?;
    let catalog = catalog(&state, &auth).await?;
    Ok(HttpResponse::Ok().json(present(&state, &catalog, record).await?))
}

/// Rename a segment and/or replace a dynamic segment's conditions.
#[utoipa::path(
    operation_id = "updateSegment",
    tag = "segments",
    params(("id" = i64, Path, description = "Segment id")),
    request_body = SegmentPatch,
    responses(
        (status = 200, body = Segment), (status = 404, body = Problem), (status = 409, body = Problem, description = "Conditions given for a static segment"),
        (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[patch("/v1/segments/{id}")]
pub async fn update(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: Json<SegmentPatch>,
) -> Result<HttpResponse, ApiError> {
    let id = SegmentId(*id);
    let input = body.0;
    let name = input.name.as_deref().map(self::name).transpose()?;
    let conditions = input.conditions.map(|tree| tree.0);
    // The store checks the rules (a static segment takes no conditions, the
    // tree validates, no cycle) inside the write.
    let record = state
        .store
        .update_segment(
            auth.0.workspace_id,
            id,
            name.as_deref(),
            conditions.as_ref(),
            state.engine.limits,
        )
        .await?;
    let catalog = self::catalog(&state, &auth).await?;
    if conditions.is_some() {
        state.rebuild(auth.0.workspace_id, id).await;
        // Segments that refer to this one change with it.
        for dependent in catalog.segments.dependents(id) {
            state.rebuild(auth.0.workspace_id, dependent).await;
        }
    }
    Ok(HttpResponse::Ok().json(present(&state, &catalog, record).await?))
}

/// Delete a segment. Refused while other segments refer to it.
#[utoipa::path(
    operation_id = "deleteSegment",
    tag = "segments",
    params(("id" = i64, Path, description = "Segment id")),
    responses(
        (status = 204), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "Other segments refer to it")
    ),
    security(("api_key" = []))
)]
#[delete("/v1/segments/{id}")]
pub async fn remove(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = SegmentId(*id);
    // Refused by the store, inside the write, while others refer to it.
    state.store.delete_segment(auth.0.workspace_id, id).await?;
    state.forget_segment(auth.0.workspace_id, id).await;
    Ok(HttpResponse::NoContent().finish())
}

/// List a segment's members, a page at a time, by contact id.
#[utoipa::path(
    operation_id = "listSegmentMembers",
    tag = "segments",
    params(("id" = i64, Path, description = "Segment id"), PageParams),
    responses(
        (status = 200, body = crate::wire::contact::ContactPage), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "The set is still being built: its members are listed once it is")
    ),
    security(("api_key" = []))
)]
#[get("/v1/segments/{id}/members")]
pub async fn members(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    page: Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let id = SegmentId(*id);
    let limit = page.limit()?;
    let cursor = page.position()?;
    let catalog = catalog(&state, &auth).await?;
    if !catalog.segments.contains(id) {
        return Err(ApiError::NotFound {
            entity: "segment",
            id: id.to_string(),
        });
    }
    let (page, next) = membership::members(&state, &catalog, id, cursor.as_deref(), limit).await?;
    Ok(HttpResponse::Ok().json(crate::wire::contact::ContactPage {
        items: page.items.into_iter().map(Contact::from).collect(),
        next_cursor: next.as_deref().map(encode_cursor),
    }))
}

/// Resolves a membership request to contact ids: names must each name
/// exactly one contact.
async fn resolve_members(
    state: &AppState,
    auth: &Auth,
    input: MembersInput,
) -> Result<Vec<ContactId>, ApiError> {
    let mut ids: Vec<ContactId> = input
        .contact_ids
        .unwrap_or_default()
        .into_iter()
        .map(ContactId)
        .collect();
    let names = input.names.unwrap_or_default();
    if ids.len() > MAX_BULK_TAG_CONTACTS {
        return Err(ApiError::Validation(Violations::one(
            FieldError::new("too_many", format!("at most {MAX_BULK_TAG_CONTACTS} ids"))
                .at("/contact_ids"),
        )));
    }
    if names.len() > MAX_MEMBER_NAMES {
        return Err(ApiError::Validation(Violations::one(
            FieldError::new("too_many", format!("at most {MAX_MEMBER_NAMES} names")).at("/names"),
        )));
    }
    for (i, name) in names.iter().enumerate() {
        segments_domain::storable(name)
            .map_err(|e| ApiError::Validation(Violations::one(e.at(format!("/names/{i}")))))?;
    }
    let found = state
        .store
        .contacts_named(auth.0.workspace_id, &names)
        .await?;
    for (i, name) in names.iter().enumerate() {
        match found.get(name).map(Vec::as_slice).unwrap_or_default() {
            [] => {
                return Err(ApiError::NotFound {
                    entity: "contact named",
                    id: format!("`{name}` (at /names/{i})"),
                });
            }
            [one] => ids.push(*one),
            many => {
                return Err(ApiError::Conflict {
                    code: "ambiguous_name",
                    message: format!(
                        "{} contacts are named `{name}`; add them by id (see `candidates`)",
                        many.len()
                    ),
                    pointer: Some(format!("/names/{i}")),
                    candidates: many.iter().map(|c| c.0).collect(),
                });
            }
        }
    }
    Ok(ids)
}

/// Add contacts to a static segment, by id and/or by name.
#[utoipa::path(
    operation_id = "addSegmentMembers",
    tag = "segments",
    params(("id" = i64, Path, description = "Segment id")),
    request_body = MembersInput,
    responses(
        (status = 200, body = MembersResult), (status = 404, body = Problem, description = "Unknown segment, or a name no contact has"),
        (status = 409, body = Problem, description = "A dynamic segment, or a name several contacts share (see `candidates`)"),
        (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[post("/v1/segments/{id}/members")]
pub async fn add_members(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: BulkJson<MembersInput>,
) -> Result<HttpResponse, ApiError> {
    change_members(auth, state, SegmentId(*id), body.0, true).await
}

/// Remove contacts from a static segment, by id and/or by name.
#[utoipa::path(
    operation_id = "removeSegmentMembers",
    tag = "segments",
    params(("id" = i64, Path, description = "Segment id")),
    request_body = MembersInput,
    responses(
        (status = 200, body = MembersResult), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[post("/v1/segments/{id}/members/remove")]
pub async fn remove_members(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: BulkJson<MembersInput>,
) -> Result<HttpResponse, ApiError> {
    change_members(auth, state, SegmentId(*id), body.0, false).await
}

async fn change_members(
    auth: Auth,
    state: web::Data<AppState>,
    id: SegmentId,
    input: MembersInput,
    add: bool,
) -> Result<HttpResponse, ApiError> {
    // The segment is checked first so that an unknown segment answers 404
    // whatever the names say.
    state.store.get_segment(auth.0.workspace_id, id).await?;
    let ids = resolve_members(&state, &auth, input).await?;
    let change = state
        .store
        .change_static_members(auth.0.workspace_id, id, &ids, add)
        .await?;
    state
        .contacts_changed(auth.0.workspace_id, &change.contacts, &change.touched)
        .await;
    Ok(HttpResponse::Ok().json(MembersResult {
        changed: change.changed,
        not_found: change.not_found.into_iter().map(|c| c.0).collect(),
    }))
}

/// Count and sample the contacts a condition tree selects, without saving anything.
#[utoipa::path(
    operation_id = "previewSegment",
    tag = "segments",
    request_body = PreviewInput,
    responses(
        (status = 200, body = PreviewResult), (status = 422, body = Problem),
        (status = 504, body = Problem, description = "The evaluation took longer than the preview timeout")
    ),
    security(("api_key" = []))
)]
#[post("/v1/segments/preview")]
pub async fn preview(
    auth: Auth,
    state: web::Data<AppState>,
    body: Json<PreviewInput>,
) -> Result<HttpResponse, ApiError> {
    let input = body.0;
    let limit = input.limit.unwrap_or(20);
    if limit > MAX_PREVIEW {
        return Err(ApiError::Validation(Violations::one(
            FieldError::new("out_of_range", format!("at most {MAX_PREVIEW}")).at("/limit"),
        )));
    }
    let catalog = catalog(&state, &auth).await?;
    let tree = parse_conditions(&state, &catalog, &input.conditions.0, None)?;
    let work = async {
        let ctx = catalog.sql_context(state.store.sql_backend(), Timestamp::now());
        let condition = tree
            .to_sql(&ctx)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        // The count and the sample are independent queries: run them on two
        // connections at once.
        let count = state
            .store
            .count_where(auth.0.workspace_id, condition.clone(), None);
        let sample = async {
            if limit == 0 {
                Ok(Vec::new())
            } else {
                state
                    .store
                    .contacts_where(auth.0.workspace_id, condition, None, limit)
                    .await
                    .map(|page| page.items)
            }
        };
        let (count, contacts) = tokio::try_join!(count, sample)?;
        Ok::<_, ApiError>(PreviewResult {
            count,
            contacts: contacts.into_iter().map(Contact::from).collect(),
        })
    };
    Ok(HttpResponse::Ok().json(work.await?))
}

/// Why a contact is, or is not, a member: the tree with each node's truth.
#[utoipa::path(
    operation_id = "explainSegmentMembership",
    tag = "segments",
    params(("id" = i64, Path, description = "Segment id"), ExplainParams),
    responses((status = 200, body = ExplainResult), (status = 404, body = Problem)),
    security(("api_key" = []))
)]
#[get("/v1/segments/{id}/explain")]
pub async fn explain(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    query: Query<ExplainParams>,
) -> Result<HttpResponse, ApiError> {
    let id = SegmentId(*id);
    let contact_id = ContactId(query.contact_id);
    let catalog = catalog(&state, &auth).await?;
    let definition = catalog.segments.get(id).ok_or_else(|| ApiError::NotFound {
        entity: "segment",
        id: id.to_string(),
    })?;
    let snapshot = state
        .store
        .snapshots(auth.0.workspace_id, &[contact_id])
        .await?
        .pop()
        .ok_or_else(|| ApiError::NotFound {
            entity: "contact",
            id: contact_id.to_string(),
        })?;
    let ctx = EvalContext {
        now: Timestamp::now(),
        segments: &catalog.segments,
        depth: 0,
    };
    let (member, tree) = match &definition.kind {
        segments_conditions::SegmentKind::Static => (snapshot.static_segments.contains(&id), None),
        segments_conditions::SegmentKind::Dynamic(tree) => {
            let explanation = tree.explain(&snapshot, &ctx);
            (explanation.result, Some(explanation.into()))
        }
    };
    Ok(HttpResponse::Ok().json(ExplainResult {
        segment_id: id.0,
        contact_id: contact_id.0,
        member,
        tree,
    }))
}

/// Used by contact search: the SQL of "member of segment `id`".
pub(crate) fn membership_condition(
    state: &AppState,
    catalog: &Catalog,
    id: SegmentId,
    now: Timestamp,
) -> Result<SqlExpr, ApiError> {
    if !catalog.segments.contains(id) {
        return Err(ApiError::Validation(Violations::one(
            FieldError::new("unknown_segment", format!("segment {id} does not exist"))
                .at("/segment_id"),
        )));
    }
    let ctx = catalog.sql_context(state.store.sql_backend(), now);
    catalog
        .segments
        .membership_sql(id, &ctx)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Rebuild a segment's materialized set from the database now.
#[utoipa::path(
    operation_id = "rebuildSegment",
    tag = "segments",
    params(("id" = i64, Path, description = "Segment id")),
    responses(
        (status = 202, body = RebuildAccepted), (status = 404, body = Problem), (status = 503, body = Problem, description = "No materializer is configured")
    ),
    security(("api_key" = []))
)]
#[post("/v1/segments/{id}/rebuild")]
pub async fn rebuild(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = SegmentId(*id);
    state.store.get_segment(auth.0.workspace_id, id).await?;
    let redis = state.redis.as_ref().ok_or_else(|| {
        ApiError::Unavailable("no materializer is configured (redis is disabled)".into())
    })?;
    redis
        .jobs
        .push_within(
            segments_worker::Job::Rebuild {
                workspace_id: auth.0.workspace_id.0,
                segment_id: id.0,
            },
            // Answering 503 is for a Redis that is away, not one that is busy.
            Duration::from_secs(5),
        )
        .await
        .map_err(|e| ApiError::Unavailable(format!("the rebuild could not be queued: {e}")))?;
    Ok(HttpResponse::Accepted().json(RebuildAccepted {
        segment_id: id.0,
        status: "queued".into(),
    }))
}

/// Freeze a segment's current members under an immutable Redis key with a
/// TTL, so a campaign iterates a fixed audience while membership moves on.
#[utoipa::path(
    operation_id = "createSegmentSnapshot",
    tag = "segments",
    params(("id" = i64, Path, description = "Segment id")),
    request_body = SnapshotInput,
    responses(
        (status = 201, body = SnapshotCreated), (status = 404, body = Problem), (status = 409, body = Problem, description = "The set is still being built"),
        (status = 422, body = Problem),
        (status = 503, body = Problem, description = "Redis is unavailable or not configured")
    ),
    security(("api_key" = []))
)]
#[post("/v1/segments/{id}/snapshots")]
pub async fn create_snapshot(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: Json<SnapshotInput>,
) -> Result<HttpResponse, ApiError> {
    let id = SegmentId(*id);
    let ttl = body.0.ttl_seconds.unwrap_or(86_400);
    if !(60..=30 * 86_400).contains(&ttl) {
        return Err(ApiError::Validation(Violations::one(
            FieldError::new("out_of_range", "between 60 seconds and 30 days").at("/ttl_seconds"),
        )));
    }
    state.store.get_segment(auth.0.workspace_id, id).await?;
    let redis = state.redis.as_ref().ok_or_else(|| {
        ApiError::Unavailable("no materializer is configured (redis is disabled)".into())
    })?;
    let unavailable =
        |e: segments_worker::WorkerError| ApiError::Unavailable(format!("redis: {e}"));
    let catalog = catalog(&state, &auth).await?;
    // A set built for an earlier definition would freeze the old audience.
    if !redis
        .materializer
        .status(auth.0.workspace_id, id)
        .await
        .map_err(unavailable)?
        .is_some_and(|status| status.reflects(&catalog.segments, id))
    {
        return Err(ApiError::Conflict {
            code: "building",
            message: format!("segment {id} is being built; snapshot it once it is"),
            pointer: None,
            candidates: Vec::new(),
        });
    }
    let snapshot = redis
        .materializer
        .snapshot(auth.0.workspace_id, id, Duration::from_secs(ttl))
        .await
        .map_err(unavailable)?;
    Ok(HttpResponse::Created().json(SnapshotCreated {
        key: snapshot.key,
        count: snapshot.count,
        expires_in_seconds: ttl,
    }))
}
