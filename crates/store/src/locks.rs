//! Contact row locks, always taken in one global order: ascending id.
//!
//! Two rules rest on these locks. Every write that records a change for a
//! contact holds the contact's row lock first, so one contact's change
//! sequence numbers follow commit order (its version never goes back). And
//! every path takes its contact locks before anything else it locks (tags,
//! links, values) and in id order, so two writers over the same contacts
//! queue instead of deadlocking; what deadlocks remain (a unique-index wait
//! on a tag two writers create at once, say) are retried by
//! `Store::retrying`.
//!
//! SQLite has one writer at a time (`BEGIN IMMEDIATE`), so there the reads
//! take no lock.

use std::collections::HashMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use segments_domain::WorkspaceId;

use crate::StoreError;
use crate::batch::MAX_IN_LIST;
use crate::entities::contact;

/// Locks those of `ids` that are contacts of the workspace, in id order,
/// and returns them (sorted, each once).
pub(crate) async fn lock_contacts<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    ids: &[i64],
) -> Result<Vec<i64>, StoreError> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut found = Vec::with_capacity(sorted.len());
    // Chunks of a sorted list, each locked in order, lock the whole list in order.
    for chunk in sorted.chunks(MAX_IN_LIST) {
        let mut select = contact::Entity::find()
            .select_only()
            .column(contact::Column::Id)
            .filter(contact::Column::WorkspaceId.eq(workspace_id.0))
            .filter(contact::Column::Id.is_in(chunk.iter().copied()))
            .order_by_asc(contact::Column::Id);
        if conn.get_database_backend() == DbBackend::Postgres {
            select = select.lock_exclusive();
        }
        found.extend(select.into_tuple::<i64>().all(conn).await?);
    }
    Ok(found)
}

/// Locks the workspace's contacts with these external ids, in id order, and
/// returns them by external id.
pub(crate) async fn lock_contacts_by_external_id<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    external_ids: &[&str],
) -> Result<HashMap<String, contact::Model>, StoreError> {
    if conn.get_database_backend() == DbBackend::Postgres {
        return crate::bulk_pg::lock_by_external_id(conn, workspace_id, external_ids).await;
    }
    let mut out = HashMap::with_capacity(external_ids.len());
    // SQLite has one writer at a time: reading is locking. Chunks keep
    // each list under its bind-parameter limit.
    for chunk in external_ids.chunks(MAX_IN_LIST) {
        let select = contact::Entity::find()
            .filter(contact::Column::WorkspaceId.eq(workspace_id.0))
            .filter(contact::Column::ExternalId.is_in(chunk.iter().map(|e| (*e).to_owned())))
            .order_by_asc(contact::Column::Id);
        out.extend(
            select
                .all(conn)
                .await?
                .into_iter()
                .filter_map(|m| m.external_id.clone().map(|e| (e, m))),
        );
    }
    Ok(out)
}
