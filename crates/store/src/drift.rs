//! The reads of the drift check and of the time pass (the worker's `drift`
//! and `time`): a page of the contacts a condition selects after an id,
//! and, for the few contacts where a set and SQL disagree, each one's
//! membership and version read in one snapshot — what makes a repair safe
//! against the writes that race it.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use segments_domain::{ContactId, WorkspaceId};

use crate::batch::MAX_IN_LIST;
use crate::changes::versions_of;
use crate::entities::contact;
use crate::transactions::{Purpose, begin};
use crate::{Store, StoreError};

/// One contact's membership of a segment, as SQL decides it, with the
/// version of the state it was decided from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipTruth {
    pub contact: ContactId,
    /// `None`: the contact does not exist (it was deleted), so it belongs
    /// to no segment, for ever (ids are never reused).
    pub member: Option<bool>,
    /// The sequence number of the contact's latest change, `None` when the
    /// log no longer holds any (pruned).
    pub version: Option<i64>,
}

impl Store {
    /// Up to `limit` ids of the workspace's contacts that satisfy
    /// `condition`, after `after`, in id order: one page of a segment's
    /// members, each page a statement of its own so that no transaction
    /// stays open across a whole check.
    pub async fn member_ids_after(
        &self,
        workspace_id: WorkspaceId,
        condition: Expr,
        after: i64,
        limit: u64,
    ) -> Result<Vec<i64>, StoreError> {
        let txn = begin(&self.db, Purpose::Plain).await?;
        crate::plan_per_call(&txn, None).await?;
        let ids = contact::Entity::find()
            .select_only()
            .column(contact::Column::Id)
            .filter(contact::Column::WorkspaceId.eq(workspace_id.0))
            .filter(contact::Column::Id.gt(after))
            .filter(condition)
            .order_by_asc(contact::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(&txn)
            .await?;
        txn.commit().await?;
        Ok(ids)
    }

    /// Whether each of `ids` satisfies `condition`, and the version of the
    /// state that says so: both read in one snapshot, so a change that
    /// commits later has a higher version (one contact's versions follow
    /// commit order).
    pub async fn membership_truth(
        &self,
        workspace_id: WorkspaceId,
        condition: Expr,
        ids: &[i64],
    ) -> Result<Vec<MembershipTruth>, StoreError> {
        let txn = begin(&self.db, Purpose::Snapshot).await?;
        crate::plan_per_call(&txn, None).await?;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_IN_LIST) {
            let member = Expr::case(condition.clone(), 1).finally(0);
            let rows: Vec<(i64, i32)> = contact::Entity::find()
                .select_only()
                .column(contact::Column::Id)
                .expr_as(member, "member")
                .filter(contact::Column::WorkspaceId.eq(workspace_id.0))
                .filter(contact::Column::Id.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(&txn)
                .await?;
            let wanted: Vec<ContactId> = chunk.iter().copied().map(ContactId).collect();
            let versions = versions_of(&txn, &wanted).await?;
            let found: std::collections::HashMap<i64, bool> =
                rows.into_iter().map(|(id, m)| (id, m == 1)).collect();
            out.extend(wanted.into_iter().map(|contact| MembershipTruth {
                contact,
                member: found.get(&contact.0).copied(),
                version: versions.get(&contact).map(|v| v.seq),
            }));
        }
        txn.commit().await?;
        Ok(out)
    }
}
