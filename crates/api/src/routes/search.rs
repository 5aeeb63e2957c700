use actix_web::{HttpResponse, post, web};
use segments_conditions::sql::SqlExpr;
use segments_domain::{ContactId, SegmentId, Timestamp};

use crate::AppState;
use crate::extract::{Auth, Json};
use crate::problem::{ApiError, Problem};
use crate::routes::segments::{catalog, membership_condition, parse_conditions};
use crate::wire::contact::{Contact, ContactPage};
use crate::wire::page::{PageParams, encode_cursor};
use crate::wire::segment::SearchInput;

/// Search contacts by a condition tree and/or a segment (the Customers page).
///
/// The same tree can be saved as a dynamic segment with `POST /v1/segments`.
#[utoipa::path(
    operation_id = "searchContacts",
    tag = "contacts",
    request_body = SearchInput,
    responses(
        (status = 200, body = ContactPage), (status = 422, body = Problem)
    ),
    security(("api_key" = []))
)]
#[post("/v1/contacts/search")]
pub async fn search(
    auth: Auth,
    state: web::Data<AppState>,
    body: Json<SearchInput>,
) -> Result<HttpResponse, ApiError> {
    let input = body.0;
    let page = PageParams {
        limit: input.limit,
        cursor: input.cursor,
    };
    // The body's page fields: their errors point into the body.
    let limit = page.limit().map_err(ApiError::in_body)?;
    let after = page.after_id().map_err(ApiError::in_body)?.map(ContactId);
    let catalog = catalog(&state, &auth).await?;
    let now = Timestamp::now();
    let mut condition: Option<SqlExpr> = None;
    if let Some(tree) = &input.conditions {
        let tree = parse_conditions(&state, &catalog, &tree.0, None)?;
        let ctx = catalog.sql_context(state.store.sql_backend(), now);
        condition = Some(
            tree.to_sql(&ctx)
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        );
    }
    if let Some(segment) = input.segment_id {
        let membership = membership_condition(&state, &catalog, SegmentId(segment), now)?;
        condition = Some(match condition {
            Some(c) => sea_query_and(c, membership),
            None => membership,
        });
    }
    let condition = condition.unwrap_or_else(|| SqlExpr::val(true));
    let result = state
        .store
        .contacts_where(auth.0.workspace_id, condition, after, limit)
        .await?;
    Ok(HttpResponse::Ok().json(ContactPage {
        items: result.items.into_iter().map(Contact::from).collect(),
        next_cursor: result.next_after.map(|id| encode_cursor(&id.0.to_string())),
    }))
}

fn sea_query_and(a: SqlExpr, b: SqlExpr) -> SqlExpr {
    use segments_conditions::sql::SqlExprTrait;
    a.and(b)
}
