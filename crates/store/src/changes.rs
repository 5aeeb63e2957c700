//! The change log: every contact write records, in its own transaction, which
//! contacts it touched and what it touched of them.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait, InsertStatement, Query, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};
use segments_conditions::{ALL_CHANGES, DataRef};
use segments_domain::{ContactId, ContactPatch, SegmentId, Timestamp, WorkspaceId};

use crate::batch::{MAX_IN_LIST, rows_per_statement};
use crate::entities::{contact_change, workspace};
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

/// When a contact's change happened, in the two orders that matter.
///
/// `seq` is the contact's version: every write to a contact takes its row
/// lock before recording its change, so one contact's sequence numbers
/// follow commit order (across contacts they follow insertion order, which
/// is not commit order). `xid` is the writing transaction, which decides
/// whether a build's snapshot saw the change (`ChangeSnapshot::sees`); on
/// SQLite, whose writers are serialized, it is the sequence number itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChangeStamp {
    pub seq: i64,
    pub xid: i64,
}

impl ChangeStamp {
    pub(crate) fn new(seq: i64, xid: Option<i64>) -> Self {
        Self {
            seq,
            xid: xid.unwrap_or(seq),
        }
    }
}

/// What one reading transaction could see of the change log, in
/// PostgreSQL's snapshot terms: every transaction below `xmin` had ended,
/// none from `xmax` on had, and those in `in_progress` (between the two)
/// were still running. On SQLite a snapshot is "everything through seq N":
/// `xmin = xmax = N + 1`, nobody in progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSnapshot {
    pub xmin: i64,
    pub xmax: i64,
    pub in_progress: Vec<i64>,
}

impl ChangeSnapshot {
    /// Everything through `seq` (SQLite).
    pub fn through(seq: i64) -> Self {
        Self {
            xmin: seq + 1,
            xmax: seq + 1,
            in_progress: Vec::new(),
        }
    }

    /// Whether a reader with this snapshot saw the writes of transaction
    /// `xid` (committed ones only: an aborted transaction wrote no change).
    pub fn sees(&self, xid: i64) -> bool {
        xid < self.xmin || (xid < self.xmax && !self.in_progress.contains(&xid))
    }

    /// Parses `pg_current_snapshot()::text`: `xmin:xmax:xip,xip,…`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let in_progress = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?,
        };
        parts.next().is_none().then_some(Self {
            xmin,
            xmax,
            in_progress,
        })
    }

    /// The form `parse` reads (and PostgreSQL's `pg_snapshot` input).
    pub fn to_text(&self) -> String {
        let list: Vec<String> = self.in_progress.iter().map(i64::to_string).collect();
        format!("{}:{}:{}", self.xmin, self.xmax, list.join(","))
    }
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

/// Any of a contact's tags (a tag renamed or deleted under it).
pub fn any_tag() -> Vec<String> {
    vec![DataRef::Tags.change_key()]
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

/// Records that one contact changed, and returns the change's stamp: the
/// contact's version as of this write and the writer's transaction, which
/// its job carries so the worker need not look them up.
///
/// The caller holds the contact's row lock (or created the row): that is
/// what puts one contact's sequence numbers in commit order.
pub(crate) async fn record_one<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    contact_id: i64,
    changed: &[String],
) -> Result<ChangeStamp, StoreError> {
    let mut insert = change_insert();
    insert
        .values([
            workspace_id.0.into(),
            contact_id.into(),
            changed.join(" ").into(),
            Timestamp::now().get().into(),
        ])?
        .returning(Query::returning().columns(stamp_columns(conn)));
    let row = conn
        .query_one(&insert)
        .await?
        .ok_or(sea_orm::DbErr::RecordNotInserted)?;
    let seq: i64 = row.try_get_by_index(0)?;
    let xid: Option<i64> = if conn.get_database_backend() == DbBackend::Postgres {
        row.try_get_by_index(1)?
    } else {
        None
    };
    Ok(ChangeStamp::new(seq, xid))
}

/// The columns a change's stamp is read from. SQLite's column stays empty
/// and is not read: sqlx there types a column added by a migration from the
/// pool's cached schema, and has been seen to decode its NULL as text.
fn stamp_columns<C: ConnectionTrait>(conn: &C) -> Vec<contact_change::Column> {
    if conn.get_database_backend() == DbBackend::Postgres {
        vec![contact_change::Column::Seq, contact_change::Column::Xid]
    } else {
        vec![contact_change::Column::Seq]
    }
}

/// Records changes that differ per contact.
pub(crate) async fn record_each<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    rows: &[(i64, String)],
) -> Result<(), StoreError> {
    if conn.get_database_backend() == DbBackend::Postgres {
        return crate::bulk_pg::record_changes(conn, workspace_id, rows.to_vec(), Timestamp::now())
            .await;
    }
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

impl Store {
    /// The snapshot a transaction starting now would have.
    pub async fn current_snapshot(&self) -> Result<ChangeSnapshot, StoreError> {
        current_snapshot(&self.db).await
    }

    /// Each contact's version: the stamp of its latest change.
    pub async fn contact_versions(
        &self,
        ids: &[ContactId],
    ) -> Result<HashMap<ContactId, ChangeStamp>, StoreError> {
        versions_of(&self.db, ids).await
    }

    /// Changes that `from` did not see (`None`: a snapshot that saw
    /// nothing) and `to` did (`None`: everything committed now), of one
    /// workspace or all, with `seq > after`, oldest first, at most `limit`.
    /// Page by passing the last `seq` as `after`.
    pub async fn changes_unseen(
        &self,
        from: Option<&ChangeSnapshot>,
        to: Option<&ChangeSnapshot>,
        workspace: Option<WorkspaceId>,
        after: i64,
        limit: u64,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        self.changes_unseen_since(from, to, workspace, 0, after, limit)
            .await
    }

    /// As `changes_unseen`, leaving out the changes of transactions below
    /// `xmin` (sequence numbers on SQLite): those every snapshot with an
    /// `xmin` of at least that saw.
    pub async fn changes_unseen_since(
        &self,
        from: Option<&ChangeSnapshot>,
        to: Option<&ChangeSnapshot>,
        workspace: Option<WorkspaceId>,
        xmin: i64,
        after: i64,
        limit: u64,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        let postgres = self.backend() == DbBackend::Postgres;
        let mut query =
            contact_change::Entity::find().filter(contact_change::Column::Seq.gt(after));
        if xmin > 0 {
            let column = if postgres {
                contact_change::Column::Xid
            } else {
                contact_change::Column::Seq
            };
            query = query.filter(column.gte(xmin));
        }
        if let Some(from) = from {
            query = query.filter(unseen_by(postgres, from));
        }
        if let Some(to) = to {
            query = query.filter(unseen_by(postgres, to).not());
        }
        if let Some(ws) = workspace {
            query = query.filter(contact_change::Column::WorkspaceId.eq(ws.0));
        }
        let rows: Vec<(i64, i64, i64, String)> = query
            .select_only()
            .columns([
                contact_change::Column::Seq,
                contact_change::Column::WorkspaceId,
                contact_change::Column::ContactId,
                contact_change::Column::Changed,
            ])
            .order_by_asc(contact_change::Column::Seq)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(seq, ws, contact, changed)| ChangeRecord {
                seq,
                workspace_id: WorkspaceId(ws),
                contact_id: ContactId(contact),
                changed: changed.split(' ').map(str::to_owned).collect(),
            })
            .collect())
    }

    /// The highest sequence number among the log rows `prune_changes`
    /// may delete: those older than `keep` that `swept` saw. Nothing can
    /// join them later (they all committed before `swept`), so a contact
    /// left with no row once they are deleted was last changed at or
    /// before it.
    pub async fn prunable_through(
        &self,
        swept: &ChangeSnapshot,
        keep: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let through: Option<Option<i64>> = contact_change::Entity::find()
            .select_only()
            .expr(Expr::col(contact_change::Column::Seq).max())
            .filter(self.prunable(swept, keep))
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(through.flatten())
    }

    /// Deletes the log rows older than `keep` that `swept` saw, up to
    /// sequence number `through`. Returns how many went.
    pub async fn prune_changes(
        &self,
        swept: &ChangeSnapshot,
        keep: Duration,
        through: i64,
    ) -> Result<u64, StoreError> {
        Ok(contact_change::Entity::delete_many()
            .filter(self.prunable(swept, keep))
            .filter(contact_change::Column::Seq.lte(through))
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    fn prunable(&self, swept: &ChangeSnapshot, keep: Duration) -> Condition {
        let cutoff = Utc::now() - chrono::Duration::from_std(keep).unwrap_or_default();
        let column = if self.backend() == DbBackend::Postgres {
            contact_change::Column::Xid
        } else {
            contact_change::Column::Seq
        };
        Condition::all()
            .add(column.lt(swept.xmin))
            .add(contact_change::Column::CreatedAt.lt(cutoff))
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

/// The snapshot of the transaction `conn` is in (or of a new statement):
/// on PostgreSQL `pg_current_snapshot()`, on SQLite the highest sequence
/// number it can read.
pub(crate) async fn current_snapshot<C: ConnectionTrait>(
    conn: &C,
) -> Result<ChangeSnapshot, StoreError> {
    if conn.get_database_backend() == DbBackend::Postgres {
        let row = conn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_current_snapshot()::text AS snapshot",
            ))
            .await?
            .ok_or(sea_orm::DbErr::RecordNotFound("pg_current_snapshot".into()))?;
        let text: String = row.try_get("", "snapshot")?;
        ChangeSnapshot::parse(&text)
            .ok_or_else(|| sea_orm::DbErr::Custom(format!("unreadable snapshot `{text}`")).into())
    } else {
        let max: Option<Option<i64>> = contact_change::Entity::find()
            .select_only()
            .expr(Expr::col(contact_change::Column::Seq).max())
            .into_tuple()
            .one(conn)
            .await?;
        Ok(ChangeSnapshot::through(max.flatten().unwrap_or(0)))
    }
}

/// A condition on `contact_changes` rows: the change was not seen by a
/// reader with `snapshot`. The range test on the indexed column comes
/// first, so the scan starts at the snapshot's horizon.
fn unseen_by(postgres: bool, snapshot: &ChangeSnapshot) -> SimpleExpr {
    if postgres {
        Expr::col(contact_change::Column::Xid)
            .gte(snapshot.xmin)
            .and(Expr::cust_with_values(
                "NOT pg_visible_in_snapshot(\"xid\"::text::xid8, $1::pg_snapshot)",
                [snapshot.to_text()],
            ))
    } else {
        Expr::col(contact_change::Column::Seq).gte(snapshot.xmin)
    }
}

/// Each contact's version, read through `conn` (in a snapshot, together
/// with the state it versions).
pub(crate) async fn versions_of<C: ConnectionTrait>(
    conn: &C,
    ids: &[ContactId],
) -> Result<HashMap<ContactId, ChangeStamp>, StoreError> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_IN_LIST) {
        let latest = Query::select()
            .expr(Expr::col(contact_change::Column::Seq).max())
            .from(contact_change::Entity)
            .and_where(contact_change::Column::ContactId.is_in(chunk.iter().map(|c| c.0)))
            .group_by_col(contact_change::Column::ContactId)
            .to_owned();
        let select = contact_change::Entity::find()
            .select_only()
            .column(contact_change::Column::ContactId)
            .columns(stamp_columns(conn))
            .filter(contact_change::Column::Seq.in_subquery(latest));
        if conn.get_database_backend() == DbBackend::Postgres {
            let rows: Vec<(i64, i64, Option<i64>)> = select.into_tuple().all(conn).await?;
            out.extend(
                rows.into_iter()
                    .map(|(c, seq, xid)| (ContactId(c), ChangeStamp::new(seq, xid))),
            );
        } else {
            let rows: Vec<(i64, i64)> = select.into_tuple().all(conn).await?;
            out.extend(
                rows.into_iter()
                    .map(|(c, seq)| (ContactId(c), ChangeStamp::new(seq, None))),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::ChangeSnapshot;

    #[test]
    fn a_snapshot_sees_what_ended_before_it_and_nothing_in_progress() {
        let s = ChangeSnapshot::parse("10:20:12,15").unwrap_or_default();
        assert!(s.sees(9));
        assert!(s.sees(11));
        assert!(!s.sees(12));
        assert!(s.sees(13));
        assert!(!s.sees(15));
        assert!(!s.sees(20));
        assert!(!s.sees(25));
        assert_eq!(s.to_text(), "10:20:12,15");
        assert_eq!(
            ChangeSnapshot::parse("7:7:"),
            Some(ChangeSnapshot::through(6))
        );
        assert_eq!(ChangeSnapshot::parse("7:8:x"), None);
    }

    #[test]
    fn a_sqlite_snapshot_sees_everything_through_its_sequence_number() {
        let s = ChangeSnapshot::through(41);
        assert!(s.sees(41));
        assert!(!s.sees(42));
    }
}
