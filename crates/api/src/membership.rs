//! Segment membership as the API reads it: counts and member pages.
//!
//! The one place that decides where membership comes from. Today it is the
//! SQL evaluation of each segment; once the materializer keeps Redis sets,
//! this module reads them instead and nothing else changes.

use segments_conditions::SegmentSql;
use segments_domain::{ContactId, SegmentId, Timestamp};
use segments_store::{Catalog, ContactPage};

use crate::AppState;
use crate::problem::ApiError;

pub async fn count(
    state: &AppState,
    catalog: &Catalog,
    segment: SegmentId,
) -> Result<u64, ApiError> {
    let ctx = catalog.sql_context(state.store.sql_backend(), Timestamp::now());
    let condition = catalog
        .segments
        .membership_sql(segment, &ctx)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(state
        .store
        .count_where(catalog.workspace_id, condition, None)
        .await?)
}

pub async fn members(
    state: &AppState,
    catalog: &Catalog,
    segment: SegmentId,
    after: Option<ContactId>,
    limit: u64,
) -> Result<ContactPage, ApiError> {
    let ctx = catalog.sql_context(state.store.sql_backend(), Timestamp::now());
    let condition = catalog
        .segments
        .membership_sql(segment, &ctx)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(state
        .store
        .contacts_where(catalog.workspace_id, condition, after, limit)
        .await?)
}
