use actix_web::{HttpResponse, get, web};
use segments_conditions::{EvalContext, SegmentEvaluator, SegmentKind as Kind};
use segments_domain::{ContactId, SegmentId, Timestamp};

use crate::AppState;
use crate::extract::Auth;
use crate::problem::{ApiError, Problem};
use crate::routes::segments::catalog;
use crate::wire::segment::{ContactSegment, ContactSegments, SegmentKind};

/// The segments a contact belongs to (for workflow If-Else and Switch routing).
///
/// Segments whose sets are built for their current definition answer from
/// those sets; others are evaluated on the contact directly.
#[utoipa::path(
    operation_id = "listContactSegments",
    tag = "contacts",
    params(("id" = i64, Path, description = "Contact id")),
    responses((status = 200, body = ContactSegments), (status = 404, body = Problem)),
    security(("api_key" = []))
)]
#[get("/v1/contacts/{id}/segments")]
pub async fn contact_segments(
    auth: Auth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let ws = auth.0.workspace_id;
    let contact = ContactId(*id);
    let snapshot = state
        .store
        .snapshots(ws, &[contact])
        .await?
        .pop()
        .ok_or_else(|| ApiError::NotFound {
            entity: "contact",
            id: contact.to_string(),
        })?;
    let catalog = catalog(&state, &auth).await?;
    let all: Vec<SegmentId> = catalog.segments.iter().map(|d| d.id).collect();
    // Which segments have a set built for the definition this request
    // reads (one round trip), and which of those hold the contact. A set
    // built for an earlier definition is passed over: evaluated here, the
    // segment answers for the edit before its rebuild lands.
    let mut built = Vec::new();
    let mut in_sets = Vec::new();
    if let Some(redis) = &state.redis {
        let found = match redis.materializer.built_definitions(ws, &all).await {
            Ok(definitions) => {
                built = all
                    .iter()
                    .zip(definitions)
                    .filter(|(s, d)| catalog.segments.built_for_current(**s, d.as_deref()))
                    .map(|(s, _)| *s)
                    .collect();
                redis.materializer.segments_of(ws, contact, &built).await
            }
            Err(e) => Err(e),
        };
        match found {
            Ok(found) => in_sets = found,
            Err(e) => {
                tracing::warn!(error = %e, "redis unavailable; evaluating every segment");
                built.clear();
            }
        }
    }
    let ctx = EvalContext {
        now: Timestamp::now(),
        segments: &catalog.segments,
        depth: 0,
    };
    let items = catalog
        .segments
        .iter()
        .filter(|d| {
            if built.contains(&d.id) {
                in_sets.contains(&d.id)
            } else {
                catalog.segments.is_member(d.id, &snapshot, &ctx)
            }
        })
        .map(|d| ContactSegment {
            id: d.id.0,
            name: d.name.clone(),
            kind: match d.kind {
                Kind::Static => SegmentKind::Static,
                Kind::Dynamic(_) => SegmentKind::Dynamic,
            },
        })
        .collect();
    Ok(HttpResponse::Ok().json(ContactSegments { items }))
}
