//! Segment membership as the API reads it: counts and member pages.
//!
//! The one place that decides where membership comes from. With a
//! materializer, a built segment is read from its Redis set (SCARD, SSCAN);
//! a segment not built yet says so; when Redis does not answer, the API
//! falls back to evaluating the segment in SQL rather than failing. Without
//! a materializer (Redis disabled), every read evaluates SQL.

use segments_conditions::SegmentSql;
use segments_domain::{ContactId, SegmentId, Timestamp};
use segments_store::{Catalog, ContactPage, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::problem::ApiError;

/// Where a segment's membership was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MembershipSource {
    /// The materialized Redis set (what the campaign sender reads).
    Materialized,
    /// The set is being built; counts are not available yet.
    Building,
    /// Evaluated in SQL: no materializer is configured, Redis is down, or
    /// the set was built for an earlier definition and its rebuild has not
    /// landed yet (a read after an edit answers for the edit).
    Sql,
    /// To be evaluated in SQL, but counting did not finish within the
    /// membership query timeout (or found every connection for such
    /// queries busy): the count is absent. Members can still be paged.
    Uncounted,
}

/// A segment's size and where it came from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Membership {
    /// Members now; absent while the set is building.
    pub count: Option<u64>,
    pub source: MembershipSource,
    /// Changes applied to the set so far (materialized only).
    pub version: Option<u64>,
    /// When the set was last rebuilt in full (materialized only).
    pub built_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Members the reconciler found wrong and repaired (materialized only).
    pub repairs: Option<u64>,
}

/// The count in SQL; one that cannot be had in time is absent, so that a
/// costly segment still reads (and its write still answers) without it.
async fn sql_count(
    state: &AppState,
    catalog: &Catalog,
    segment: SegmentId,
) -> Result<Membership, ApiError> {
    let ctx = catalog.sql_context(state.store.sql_backend(), Timestamp::now());
    let condition = catalog
        .segments
        .membership_sql(segment, &ctx)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match state
        .store
        .count_where(catalog.workspace_id, condition, None)
        .await
    {
        Ok(count) => Ok(Membership {
            count: Some(count),
            source: MembershipSource::Sql,
            ..uncounted()
        }),
        Err(StoreError::Timeout(_) | StoreError::Busy { .. }) => Ok(uncounted()),
        Err(e) => Err(e.into()),
    }
}

/// A membership that was not counted (see `MembershipSource::Uncounted`).
pub fn uncounted() -> Membership {
    Membership {
        count: None,
        source: MembershipSource::Uncounted,
        version: None,
        built_at: None,
        repairs: None,
    }
}

pub async fn count(
    state: &AppState,
    catalog: &Catalog,
    segment: SegmentId,
) -> Result<Membership, ApiError> {
    let Some(redis) = &state.redis else {
        return sql_count(state, catalog, segment).await;
    };
    match redis
        .materializer
        .status(catalog.workspace_id, segment)
        .await
    {
        Ok(Some(status)) if status.reflects(&catalog.segments, segment) => Ok(Membership {
            count: Some(status.count),
            source: MembershipSource::Materialized,
            version: Some(status.version),
            // Stored as RFC 3339 text in the set's meta (a public
            // contract); sent like every other instant of the API.
            built_at: status
                .built_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc)),
            repairs: Some(status.repairs),
        }),
        // Built for an earlier definition, its rebuild not landed yet: the
        // set would answer for the old one, so SQL answers for this one.
        Ok(Some(_)) => sql_count(state, catalog, segment).await,
        Ok(None) => Ok(Membership {
            count: None,
            source: MembershipSource::Building,
            version: None,
            built_at: None,
            repairs: None,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "redis unavailable; counting in SQL");
            sql_count(state, catalog, segment).await
        }
    }
}

/// Cursors of member pages say which source they page through.
#[derive(Debug)]
enum MemberCursor {
    Sql(Option<ContactId>),
    Redis(u64),
}

/// A page of members and the cursor of the next one.
pub async fn members(
    state: &AppState,
    catalog: &Catalog,
    segment: SegmentId,
    cursor: Option<&str>,
    limit: u64,
) -> Result<(ContactPage, Option<String>), ApiError> {
    let invalid = || ApiError::InvalidParameter {
        name: "cursor".into(),
        message: "not a cursor returned by this endpoint".into(),
    };
    let parsed = match cursor {
        None => None,
        Some(c) => Some(match c.split_once(':') {
            Some(("s", id)) => {
                MemberCursor::Sql(Some(ContactId(id.parse().map_err(|_| invalid())?)))
            }
            Some(("r", n)) => MemberCursor::Redis(n.parse().map_err(|_| invalid())?),
            _ => return Err(invalid()),
        }),
    };
    if let (Some(redis), None | Some(MemberCursor::Redis(_))) = (&state.redis, &parsed) {
        let from = match parsed {
            Some(MemberCursor::Redis(n)) => n,
            _ => 0,
        };
        match redis
            .materializer
            .status(catalog.workspace_id, segment)
            .await
        {
            Ok(Some(status)) if status.reflects(&catalog.segments, segment) => {
                let (ids, next) = redis
                    .materializer
                    .members(catalog.workspace_id, segment, from, limit)
                    .await
                    .map_err(|e| ApiError::Unavailable(e.to_string()))?;
                let items = state.store.get_contacts(catalog.workspace_id, &ids).await?;
                let page = ContactPage {
                    items,
                    next_after: None,
                };
                return Ok((page, (next != 0).then(|| format!("r:{next}"))));
            }
            // Built for an earlier definition: a listing that began in the
            // set cannot go on in SQL (or in the rebuilt set) without
            // skipping or repeating members; a new one pages SQL.
            Ok(Some(_)) if parsed.is_some() => {
                return Err(ApiError::Conflict {
                    code: "definition_changed",
                    message: format!(
                        "segment {segment}'s definition changed since this listing began; list it again from the start"
                    ),
                    pointer: None,
                    candidates: Vec::new(),
                });
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(ApiError::Conflict {
                    code: "building",
                    message: format!(
                        "segment {segment} is being built; its members will be listed once it is"
                    ),
                    pointer: None,
                    candidates: Vec::new(),
                });
            }
            Err(e) if parsed.is_some() => return Err(ApiError::Unavailable(e.to_string())),
            Err(e) => tracing::warn!(error = %e, "redis unavailable; listing members from SQL"),
        }
    }
    let after = match parsed {
        Some(MemberCursor::Sql(after)) => after,
        _ => None,
    };
    let ctx = catalog.sql_context(state.store.sql_backend(), Timestamp::now());
    let condition = catalog
        .segments
        .membership_sql(segment, &ctx)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let page = state
        .store
        .contacts_where(catalog.workspace_id, condition, after, limit)
        .await?;
    let next = page.next_after.map(|id| format!("s:{}", id.0));
    Ok((page, next))
}
