//! Segments: their definitions and the hand-made members of static ones.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use segments_conditions::Limits;
use segments_domain::{ContactId, SegmentId, Timestamp, WorkspaceId};

use crate::batch::{MAX_IN_LIST, rows_per_statement};
use crate::changes;
use crate::engine::{Catalog, bump_catalog};
use crate::entities::{contact, segment, segment_member};
use crate::{Store, StoreError};

/// How a segment decides its members.
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentRule {
    Static,
    /// The condition tree, as validated JSON.
    Dynamic(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRecord {
    pub id: SegmentId,
    pub name: String,
    pub rule: SegmentRule,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One page of segments in id order.
#[derive(Debug, Clone)]
pub struct SegmentPage {
    pub items: Vec<SegmentRecord>,
    pub next_after: Option<SegmentId>,
}

/// What adding or removing static members did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipChange {
    /// Contacts that were added (or removed) by this call.
    pub changed: u64,
    /// The contacts of the request found in the workspace.
    pub contacts: Vec<ContactId>,
    /// Ids that name no contact of this workspace.
    pub not_found: Vec<ContactId>,
    /// The change keys recorded for `contacts`.
    pub touched: Vec<String>,
}

impl TryFrom<segment::Model> for SegmentRecord {
    type Error = StoreError;

    fn try_from(m: segment::Model) -> Result<Self, StoreError> {
        let rule = match (m.kind.as_str(), m.conditions) {
            ("static", _) => SegmentRule::Static,
            ("dynamic", Some(json)) => {
                SegmentRule::Dynamic(serde_json::from_str(&json).map_err(|e| {
                    sea_orm::DbErr::Custom(format!("segment {}: stored conditions: {e}", m.id))
                })?)
            }
            (kind, _) => {
                return Err(sea_orm::DbErr::Custom(format!(
                    "segment {}: unknown kind `{kind}`",
                    m.id
                ))
                .into());
            }
        };
        Ok(Self {
            id: SegmentId(m.id),
            name: m.name,
            rule,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

fn rule_columns(rule: &SegmentRule) -> (&'static str, Option<String>) {
    match rule {
        SegmentRule::Static => ("static", None),
        SegmentRule::Dynamic(tree) => ("dynamic", Some(tree.to_string())),
    }
}

/// Every segment of the workspace, in id order, read through `conn`.
pub(crate) async fn segment_records_in<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
) -> Result<Vec<SegmentRecord>, StoreError> {
    segment::Entity::find()
        .filter(segment::Column::WorkspaceId.eq(workspace_id.0))
        .order_by_asc(segment::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(SegmentRecord::try_from)
        .collect()
}

/// A dynamic tree checked against the catalog as it stands inside the
/// writing transaction; its errors point into the request's `/conditions`.
fn validated(
    store: &Store,
    catalog: &Catalog,
    tree: &serde_json::Value,
    limits: Limits,
    current: Option<SegmentId>,
) -> Result<(), StoreError> {
    catalog
        .parse(tree, store.registry(), limits, current)
        .map(|_| ())
        .map_err(|v| StoreError::Invalid(v.prefixed("/conditions")))
}

impl Store {
    /// Every segment of the workspace, in id order.
    pub async fn segment_records(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<Vec<SegmentRecord>, StoreError> {
        segment_records_in(&self.db, workspace_id).await
    }

    pub async fn list_segments(
        &self,
        workspace_id: WorkspaceId,
        after: Option<SegmentId>,
        limit: u64,
    ) -> Result<SegmentPage, StoreError> {
        let mut query = segment::Entity::find()
            .filter(segment::Column::WorkspaceId.eq(workspace_id.0))
            .order_by_asc(segment::Column::Id)
            .limit(limit + 1);
        if let Some(after) = after {
            query = query.filter(segment::Column::Id.gt(after.0));
        }
        let (models, next_after) =
            crate::batch::split_page(query.all(&self.db).await?, limit, |m| SegmentId(m.id));
        Ok(SegmentPage {
            items: models
                .into_iter()
                .map(SegmentRecord::try_from)
                .collect::<Result<_, _>>()?,
            next_after,
        })
    }

    pub async fn get_segment(
        &self,
        workspace_id: WorkspaceId,
        id: SegmentId,
    ) -> Result<SegmentRecord, StoreError> {
        match segment::Entity::find_by_id(id.0)
            .filter(segment::Column::WorkspaceId.eq(workspace_id.0))
            .one(&self.db)
            .await?
        {
            Some(model) => model.try_into(),
            None => Err(self
                .gone_or(workspace_id, StoreError::not_found("segment", id))
                .await),
        }
    }

    /// Stores a segment. A dynamic one's tree is validated (registry,
    /// `limits`, references) inside the write, after the catalog lock.
    pub async fn create_segment(
        &self,
        workspace_id: WorkspaceId,
        name: &str,
        rule: &SegmentRule,
        limits: Limits,
    ) -> Result<SegmentRecord, StoreError> {
        self.retrying(workspace_id, async || {
            self.create_segment_once(workspace_id, name, rule, limits)
                .await
        })
        .await
    }

    async fn create_segment_once(
        &self,
        workspace_id: WorkspaceId,
        name: &str,
        rule: &SegmentRule,
        limits: Limits,
    ) -> Result<SegmentRecord, StoreError> {
        let now = Timestamp::now().get();
        let (kind, conditions) = rule_columns(rule);
        let txn = self.begin_write().await?;
        bump_catalog(&txn, workspace_id).await?;
        if let SegmentRule::Dynamic(tree) = rule {
            let catalog = self.load_catalog_in(&txn, workspace_id).await?;
            validated(self, &catalog, tree, limits, None)?;
        }
        let model = segment::ActiveModel {
            workspace_id: Set(workspace_id.0),
            name: Set(name.to_owned()),
            kind: Set(kind.to_owned()),
            conditions: Set(conditions),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        model.try_into()
    }

    /// Renames a segment and/or replaces a dynamic segment's conditions,
    /// validated inside the write after the catalog lock: two edits that
    /// would close a reference cycle between them cannot both pass.
    pub async fn update_segment(
        &self,
        workspace_id: WorkspaceId,
        id: SegmentId,
        name: Option<&str>,
        conditions: Option<&serde_json::Value>,
        limits: Limits,
    ) -> Result<SegmentRecord, StoreError> {
        self.retrying(workspace_id, async || {
            self.update_segment_once(workspace_id, id, name, conditions, limits)
                .await
        })
        .await
    }

    async fn update_segment_once(
        &self,
        workspace_id: WorkspaceId,
        id: SegmentId,
        name: Option<&str>,
        conditions: Option<&serde_json::Value>,
        limits: Limits,
    ) -> Result<SegmentRecord, StoreError> {
        let rule = conditions.map(|tree| SegmentRule::Dynamic(tree.clone()));
        let rule = rule.as_ref();
        let mut update = Query::update();
        update
            .table(segment::Entity)
            .value(segment::Column::UpdatedAt, Timestamp::now().get())
            .and_where(Expr::col(segment::Column::Id).eq(id.0))
            .and_where(Expr::col(segment::Column::WorkspaceId).eq(workspace_id.0));
        if let Some(name) = name {
            update.value(segment::Column::Name, name);
        }
        if let Some(rule) = rule {
            let (kind, conditions) = rule_columns(rule);
            update
                .value(segment::Column::Kind, kind)
                .value(segment::Column::Conditions, conditions);
        }
        let txn = self.begin_write().await?;
        bump_catalog(&txn, workspace_id).await?;
        if let Some(tree) = conditions {
            let catalog = self.load_catalog_in(&txn, workspace_id).await?;
            match catalog.records.iter().find(|r| r.id == id).map(|r| &r.rule) {
                None => return Err(StoreError::not_found("segment", id)),
                Some(SegmentRule::Static) => {
                    return Err(StoreError::Conflict {
                        code: "static_segment",
                        message: format!(
                            "segment {id} is static: its members are added by hand, not by conditions"
                        ),
                        pointer: Some("/conditions".into()),
                    });
                }
                Some(SegmentRule::Dynamic(_)) => {
                    validated(self, &catalog, tree, limits, Some(id))?;
                }
            }
        }
        if txn.execute(&update).await?.rows_affected() == 0 {
            return Err(StoreError::not_found("segment", id));
        }
        txn.commit().await?;
        self.get_segment(workspace_id, id).await
    }

    pub async fn delete_segment(
        &self,
        workspace_id: WorkspaceId,
        id: SegmentId,
    ) -> Result<(), StoreError> {
        self.retrying(workspace_id, async || {
            self.delete_segment_once(workspace_id, id).await
        })
        .await
    }

    async fn delete_segment_once(
        &self,
        workspace_id: WorkspaceId,
        id: SegmentId,
    ) -> Result<(), StoreError> {
        let txn = self.begin_write().await?;
        bump_catalog(&txn, workspace_id).await?;
        // Checked after the catalog lock: a segment that starts referring to
        // this one commits either before (and is seen here) or after (and
        // then finds it gone).
        let catalog = self.load_catalog_in(&txn, workspace_id).await?;
        let referrers = catalog.referrers(id);
        if catalog.segments.contains(id) && !referrers.is_empty() {
            return Err(StoreError::Conflict {
                code: "segment_in_use",
                message: format!(
                    "segment {id} is referred to by segment(s) {}",
                    referrers.join(", ")
                ),
                pointer: None,
            });
        }
        let result = segment::Entity::delete_many()
            .filter(segment::Column::WorkspaceId.eq(workspace_id.0))
            .filter(segment::Column::Id.eq(id.0))
            .exec(&txn)
            .await?;
        if result.rows_affected == 0 {
            return Err(StoreError::not_found("segment", id));
        }
        txn.commit().await?;
        Ok(())
    }

    /// Ids of the workspace's contacts whose name is exactly each of `names`.
    pub async fn contacts_named(
        &self,
        workspace_id: WorkspaceId,
        names: &[String],
    ) -> Result<BTreeMap<String, Vec<ContactId>>, StoreError> {
        let mut out: BTreeMap<String, Vec<ContactId>> =
            names.iter().map(|n| (n.clone(), Vec::new())).collect();
        for chunk in names.chunks(MAX_IN_LIST) {
            let rows: Vec<(i64, Option<String>)> = contact::Entity::find()
                .select_only()
                .column(contact::Column::Id)
                .column(contact::Column::Name)
                .filter(contact::Column::WorkspaceId.eq(workspace_id.0))
                .filter(contact::Column::Name.is_in(chunk.iter().cloned()))
                .order_by_asc(contact::Column::Id)
                .into_tuple()
                .all(&self.db)
                .await?;
            for (id, name) in rows {
                if let Some(ids) = name.and_then(|n| out.get_mut(&n)) {
                    ids.push(ContactId(id));
                }
            }
        }
        Ok(out)
    }

    /// Adds (`add = true`) or removes contacts of a static segment.
    pub async fn change_static_members(
        &self,
        workspace_id: WorkspaceId,
        segment_id: SegmentId,
        contact_ids: &[ContactId],
        add: bool,
    ) -> Result<MembershipChange, StoreError> {
        self.retrying(workspace_id, async || {
            self.change_static_members_once(workspace_id, segment_id, contact_ids, add)
                .await
        })
        .await
    }

    async fn change_static_members_once(
        &self,
        workspace_id: WorkspaceId,
        segment_id: SegmentId,
        contact_ids: &[ContactId],
        add: bool,
    ) -> Result<MembershipChange, StoreError> {
        let txn = self.begin_write().await?;
        let seg = segment::Entity::find_by_id(segment_id.0)
            .filter(segment::Column::WorkspaceId.eq(workspace_id.0))
            .one(&txn)
            .await?
            .ok_or_else(|| StoreError::not_found("segment", segment_id))?;
        if seg.kind != "static" {
            return Err(StoreError::Conflict {
                code: "dynamic_segment",
                message: format!(
                    "segment {segment_id} is dynamic: its members follow its conditions and cannot be edited by hand"
                ),
                pointer: None,
            });
        }
        // The members' row locks, taken before their change is recorded,
        // keep each contact's versions in commit order (see `locks`).
        let raw: Vec<i64> = contact_ids.iter().map(|c| c.0).collect();
        let locked = crate::locks::lock_contacts(&txn, workspace_id, &raw).await?;
        let found: HashSet<i64> = locked.iter().copied().collect();
        let mut not_found: Vec<ContactId> = contact_ids
            .iter()
            .copied()
            .filter(|c| !found.contains(&c.0))
            .collect();
        not_found.sort();
        not_found.dedup();
        let ids = locked;
        let mut changed = 0;
        if add {
            let now = Timestamp::now().get();
            for chunk in ids.chunks(rows_per_statement(3)) {
                let mut insert = Query::insert();
                insert
                    .into_table(segment_member::Entity)
                    .columns([
                        segment_member::Column::SegmentId,
                        segment_member::Column::ContactId,
                        segment_member::Column::AddedAt,
                    ])
                    .on_conflict(
                        OnConflict::columns([
                            segment_member::Column::SegmentId,
                            segment_member::Column::ContactId,
                        ])
                        .do_nothing()
                        .to_owned(),
                    );
                for id in chunk {
                    insert.values([segment_id.0.into(), (*id).into(), now.into()])?;
                }
                changed += txn.execute(&insert).await?.rows_affected();
            }
        } else {
            for chunk in ids.chunks(MAX_IN_LIST) {
                changed += segment_member::Entity::delete_many()
                    .filter(segment_member::Column::SegmentId.eq(segment_id.0))
                    .filter(segment_member::Column::ContactId.is_in(chunk.iter().copied()))
                    .exec(&txn)
                    .await?
                    .rows_affected;
            }
        }
        let touched = changes::membership_touched(segment_id);
        changes::record(&txn, workspace_id, &ids, &touched).await?;
        txn.commit().await?;
        Ok(MembershipChange {
            changed,
            contacts: ids.into_iter().map(ContactId).collect(),
            not_found,
            touched,
        })
    }

    /// The static segments each of `contact_ids` was added to.
    pub(crate) async fn static_memberships<C: ConnectionTrait>(
        conn: &C,
        contact_ids: &[i64],
    ) -> Result<HashMap<i64, Vec<SegmentId>>, StoreError> {
        let mut out: HashMap<i64, Vec<SegmentId>> = HashMap::new();
        for chunk in contact_ids.chunks(MAX_IN_LIST) {
            let rows: Vec<(i64, i64)> = segment_member::Entity::find()
                .select_only()
                .column(segment_member::Column::ContactId)
                .column(segment_member::Column::SegmentId)
                .filter(segment_member::Column::ContactId.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(conn)
                .await?;
            for (contact, seg) in rows {
                out.entry(contact).or_default().push(SegmentId(seg));
            }
        }
        Ok(out)
    }
}
