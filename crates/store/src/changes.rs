//! The change log: every contact write records, in its own transaction, which
//! contacts it touched and what it touched of them.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait, InsertStatement, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use segments_conditions::{ALL_CHANGES, DataRef};
use segments_domain::{ContactId, ContactPatch, SegmentId, Timestamp, WorkspaceId};

use crate::batch::{MAX_IN_LIST, rows_per_statement};
use crate::entities::{contact_change, contact_tag, workspace};
use crate::{Store, StoreError};

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    pub seq: i64,
    pub workspace_id: WorkspaceId,
    pub contact_id: ContactId,
    /// Change keys (`DataRef::change_key`), or `*`.
    pub changed: Vec<String>,
}

/// The change keys of what a patch touches.
pub fn touched(patch: &ContactPatch) -> Vec<String> {
    let mut keys = Vec::new();
    let mut field = |present: bool, r: DataRef| {
        if present {
            keys.push(r.change_key());
        }
    };
    field(patch.external_id.is_some(), DataRef::Field("external_id"));
    field(patch.name.is_some(), DataRef::Field("name"));
    field(patch.phone.is_some(), DataRef::Field("phone"));
    field(patch.email.is_some(), DataRef::Field("email"));
    field(patch.channel.is_some(), DataRef::Channel);
    field(
        patch.opted_in.is_some() || patch.opted_in_at.is_some(),
        DataRef::OptIn,
    );
    field(patch.first_contacted_at.is_some(), DataRef::FirstContacted);
    // A replaced tag set may have lost any tag; added or removed tags are named.
    field(patch.tags.is_some(), DataRef::Tags);
    for tag in patch.add_tags.iter().chain(&patch.remove_tags) {
        keys.push(DataRef::Tag(tag.key()).change_key());
    }
    for key in patch.attributes.keys() {
        keys.push(DataRef::Attribute(key.as_str().to_owned()).change_key());
    }
    keys
}

/// The change keys of adding or removing these tags.
pub fn tags_touched(tags: &[segments_domain::TagName]) -> Vec<String> {
    tags.iter()
        .map(|t| DataRef::Tag(t.key()).change_key())
        .collect()
}

/// The change keys of a static membership change.
pub fn membership_touched(segment: SegmentId) -> Vec<String> {
    vec![DataRef::Segment(segment).change_key()]
}

/// Everything: for creations and deletions.
pub fn everything() -> Vec<String> {
    vec![ALL_CHANGES.to_owned()]
}

/// Records that `contact_ids` changed.
pub(crate) async fn record<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    contact_ids: &[i64],
    changed: &[String],
) -> Result<(), StoreError> {
    let changed = changed.join(" ");
    let rows: Vec<(i64, String)> = contact_ids
        .iter()
        .map(|id| (*id, changed.clone()))
        .collect();
    record_each(conn, workspace_id, &rows).await
}

/// An insert into the change log, its columns named: workspace, contact,
/// change keys, time.
fn change_insert() -> InsertStatement {
    Query::insert()
        .into_table(contact_change::Entity)
        .columns([
            contact_change::Column::WorkspaceId,
            contact_change::Column::ContactId,
            contact_change::Column::Changed,
            contact_change::Column::CreatedAt,
        ])
        .to_owned()
}

/// Records that one contact changed, and returns the change's sequence
/// number: the contact's version as of this write, which its job carries so
/// the worker need not look it up.
pub(crate) async fn record_one<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    contact_id: i64,
    changed: &[String],
) -> Result<i64, StoreError> {
    let mut insert = change_insert();
    insert
        .values([
            workspace_id.0.into(),
            contact_id.into(),
            changed.join(" ").into(),
            Timestamp::now().get().into(),
        ])?
        .returning_col(contact_change::Column::Seq);
    let row = conn
        .query_one(&insert)
        .await?
        .ok_or(sea_orm::DbErr::RecordNotInserted)?;
    Ok(row.try_get_by_index(0)?)
}

/// Records changes that differ per contact.
pub(crate) async fn record_each<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    rows: &[(i64, String)],
) -> Result<(), StoreError> {
    let now = Timestamp::now().get();
    for chunk in rows.chunks(rows_per_statement(4)) {
        let mut insert = change_insert();
        for (id, changed) in chunk {
            insert.values([
                workspace_id.0.into(),
                (*id).into(),
                changed.clone().into(),
                now.into(),
            ])?;
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}

/// Records a change of every contact carrying a tag (renames, deletions),
/// in one statement however many contacts that is.
pub(crate) async fn record_tagged<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    tag_id: i64,
) -> Result<(), StoreError> {
    let select = Query::select()
        .expr(Expr::val(workspace_id.0))
        .column(contact_tag::Column::ContactId)
        .expr(Expr::val(DataRef::Tags.change_key()))
        .expr(Expr::val(Timestamp::now().get()))
        .from(contact_tag::Entity)
        .and_where(Expr::col(contact_tag::Column::TagId).eq(tag_id))
        .to_owned();
    let insert = change_insert().select_from(select)?.to_owned();
    conn.execute(&insert).await?;
    Ok(())
}

impl Store {
    /// The latest change's sequence number (0 when nothing changed yet).
    pub async fn max_change_seq(&self) -> Result<i64, StoreError> {
        let max: Option<Option<i64>> = contact_change::Entity::find()
            .select_only()
            .expr(Expr::col(contact_change::Column::Seq).max())
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(max.flatten().unwrap_or(0))
    }

    /// Each contact's version: the sequence number of its latest change.
    pub async fn contact_versions(
        &self,
        ids: &[ContactId],
    ) -> Result<HashMap<ContactId, i64>, StoreError> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_IN_LIST) {
            let rows: Vec<(i64, Option<i64>)> = contact_change::Entity::find()
                .select_only()
                .column(contact_change::Column::ContactId)
                .expr(Expr::col(contact_change::Column::Seq).max())
                .filter(contact_change::Column::ContactId.is_in(chunk.iter().map(|c| c.0)))
                .group_by(contact_change::Column::ContactId)
                .into_tuple()
                .all(&self.db)
                .await?;
            out.extend(
                rows.into_iter()
                    .filter_map(|(c, s)| s.map(|s| (ContactId(c), s))),
            );
        }
        Ok(out)
    }

    /// Changes with `after < seq <= up_to`, oldest first, at most `limit`.
    pub async fn changes_between(
        &self,
        after: i64,
        up_to: i64,
        limit: u64,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        Ok(contact_change::Entity::find()
            .filter(contact_change::Column::Seq.gt(after))
            .filter(contact_change::Column::Seq.lte(up_to))
            .order_by_asc(contact_change::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| ChangeRecord {
                seq: m.seq,
                workspace_id: WorkspaceId(m.workspace_id),
                contact_id: ContactId(m.contact_id),
                changed: m.changed.split(' ').map(str::to_owned).collect(),
            })
            .collect())
    }

    /// The highest sequence number such that every change up to it is older
    /// than `settle`: a transaction that took a number but has not committed
    /// yet cannot hide below it (unless it runs longer than `settle`).
    pub async fn settled_change_seq(&self, settle: Duration) -> Result<i64, StoreError> {
        let cutoff = Utc::now() - chrono::Duration::from_std(settle).unwrap_or_default();
        let max: Option<Option<i64>> = contact_change::Entity::find()
            .select_only()
            .expr(Expr::col(contact_change::Column::Seq).max())
            .filter(contact_change::Column::CreatedAt.lt(cutoff))
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(max.flatten().unwrap_or(0))
    }

    /// Deletes log rows at or below `seq` that are older than `keep`.
    pub async fn prune_changes(&self, seq: i64, keep: Duration) -> Result<u64, StoreError> {
        let cutoff = Utc::now() - chrono::Duration::from_std(keep).unwrap_or_default();
        Ok(contact_change::Entity::delete_many()
            .filter(contact_change::Column::Seq.lte(seq))
            .filter(contact_change::Column::CreatedAt.lt(cutoff))
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    /// Every workspace's id.
    pub async fn workspace_ids(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        let ids: Vec<i64> = workspace::Entity::find()
            .select_only()
            .column(workspace::Column::Id)
            .order_by_asc(workspace::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids.into_iter().map(WorkspaceId).collect())
    }
}
