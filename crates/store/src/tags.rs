//! Tags: listing with counts, renaming, deleting, and tagging many contacts.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use segments_domain::{ContactId, TagId, TagName, Timestamp, WorkspaceId};

use crate::bulk_pg;
use crate::changes;
use crate::contact_rows::{apply_tag_changes, touch, unlink_named_tags};
use crate::entities::{contact_tag, tag};
use crate::error::is_unique_violation;
use crate::locks::lock_contacts;
use crate::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSummary {
    pub id: TagId,
    pub name: String,
    pub contact_count: u64,
    pub created_at: DateTime<Utc>,
}

/// One page of tags in case-insensitive name order.
#[derive(Debug, Clone)]
pub struct TagPage {
    pub items: Vec<TagSummary>,
    /// The tag key to continue after, when more tags follow.
    pub next_after: Option<String>,
}

/// The contacts a tag's rename or deletion changed, and the change keys
/// recorded for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagChange {
    pub contacts: Vec<ContactId>,
    pub touched: Vec<String>,
}

impl TagChange {
    fn of(tagged: Vec<i64>) -> Self {
        Self {
            contacts: tagged.into_iter().map(ContactId).collect(),
            touched: changes::any_tag(),
        }
    }
}

/// What tagging or untagging many contacts did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkTagOutcome {
    /// Contacts found in the workspace and changed.
    pub updated: u64,
    /// The change keys recorded for them.
    pub touched: Vec<String>,
    /// Their ids.
    pub contacts: Vec<ContactId>,
    /// Ids that name no contact of this workspace.
    pub not_found: Vec<ContactId>,
}

async fn counts<C: ConnectionTrait>(
    conn: &C,
    tag_ids: &[i64],
) -> Result<HashMap<i64, u64>, StoreError> {
    if tag_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let select = Query::select()
        .column(contact_tag::Column::TagId)
        .expr_as(Expr::col(contact_tag::Column::ContactId).count(), "n")
        .from(contact_tag::Entity)
        .and_where(Expr::col(contact_tag::Column::TagId).is_in(tag_ids.iter().copied()))
        .group_by_col(contact_tag::Column::TagId)
        .to_owned();
    let mut out = HashMap::new();
    for row in conn.query_all(&select).await? {
        let n: i64 = row.try_get("", "n")?;
        out.insert(
            row.try_get::<i64>("", "tag_id")?,
            u64::try_from(n).unwrap_or(0),
        );
    }
    Ok(out)
}

impl Store {
    pub async fn list_tags(
        &self,
        workspace_id: WorkspaceId,
        after: Option<&str>,
        limit: u64,
    ) -> Result<TagPage, StoreError> {
        let mut query = tag::Entity::find()
            .filter(tag::Column::WorkspaceId.eq(workspace_id.0))
            .order_by_asc(tag::Column::NameKey)
            .limit(limit + 1);
        if let Some(after) = after {
            query = query.filter(tag::Column::NameKey.gt(after));
        }
        let (models, next_after) =
            crate::batch::split_page(query.all(&self.db).await?, limit, |m| m.name_key.clone());
        let ids: Vec<i64> = models.iter().map(|m| m.id).collect();
        let counts = counts(&self.db, &ids).await?;
        Ok(TagPage {
            items: models
                .into_iter()
                .map(|m| TagSummary {
                    contact_count: counts.get(&m.id).copied().unwrap_or(0),
                    id: TagId(m.id),
                    name: m.name,
                    created_at: m.created_at,
                })
                .collect(),
            next_after,
        })
    }

    pub async fn get_tag(
        &self,
        workspace_id: WorkspaceId,
        id: TagId,
    ) -> Result<TagSummary, StoreError> {
        let m = tag::Entity::find_by_id(id.0)
            .filter(tag::Column::WorkspaceId.eq(workspace_id.0))
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::not_found("tag", id))?;
        let counts = counts(&self.db, &[m.id]).await?;
        Ok(TagSummary {
            contact_count: counts.get(&m.id).copied().unwrap_or(0),
            id: TagId(m.id),
            name: m.name,
            created_at: m.created_at,
        })
    }

    /// Renames a tag. A rename that only changes case is allowed; one onto
    /// another tag's name is a conflict (merging tags is a separate decision).
    /// Returns the tag and the contacts carrying it (their tags changed).
    pub async fn rename_tag(
        &self,
        workspace_id: WorkspaceId,
        id: TagId,
        name: &TagName,
    ) -> Result<(TagSummary, TagChange), StoreError> {
        self.retrying(workspace_id, async || {
            self.rename_tag_once(workspace_id, id, name).await
        })
        .await
    }

    async fn rename_tag_once(
        &self,
        workspace_id: WorkspaceId,
        id: TagId,
        name: &TagName,
    ) -> Result<(TagSummary, TagChange), StoreError> {
        let txn = self.begin_write().await?;
        // The tagged contacts are locked before the tag (see `locks`): a
        // writer linking the tag holds its contact's lock and then waits on
        // the tag row, so the other order deadlocks.
        let tagged = lock_tagged(&txn, workspace_id, id).await?;
        let update = Query::update()
            .table(tag::Entity)
            .value(tag::Column::Name, name.as_str())
            .value(tag::Column::NameKey, name.key())
            .and_where(Expr::col(tag::Column::Id).eq(id.0))
            .and_where(Expr::col(tag::Column::WorkspaceId).eq(workspace_id.0))
            .to_owned();
        let result = match txn.execute(&update).await {
            Ok(r) => r,
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict {
                    code: "tag_exists",
                    message: format!("another tag is already named `{name}`"),
                    pointer: Some("/name".into()),
                });
            }
            Err(e) => return Err(e.into()),
        };
        if result.rows_affected() == 0 {
            return Err(StoreError::not_found("tag", id));
        }
        touch(&txn, &tagged, Timestamp::now()).await?;
        changes::record(&txn, workspace_id, &tagged, &changes::any_tag()).await?;
        txn.commit().await?;
        let tag = self.get_tag(workspace_id, id).await?;
        Ok((tag, TagChange::of(tagged)))
    }

    /// Deletes a tag and its links to contacts; returns the contacts that
    /// carried it.
    pub async fn delete_tag(
        &self,
        workspace_id: WorkspaceId,
        id: TagId,
    ) -> Result<TagChange, StoreError> {
        self.retrying(workspace_id, async || {
            self.delete_tag_once(workspace_id, id).await
        })
        .await
    }

    async fn delete_tag_once(
        &self,
        workspace_id: WorkspaceId,
        id: TagId,
    ) -> Result<TagChange, StoreError> {
        let txn = self.begin_bulk_write().await?;
        let tagged = lock_tagged(&txn, workspace_id, id).await?;
        changes::record(&txn, workspace_id, &tagged, &changes::any_tag()).await?;
        let result = tag::Entity::delete_many()
            .filter(tag::Column::WorkspaceId.eq(workspace_id.0))
            .filter(tag::Column::Id.eq(id.0))
            .exec(&txn)
            .await?;
        if result.rows_affected == 0 {
            return Err(StoreError::not_found("tag", id));
        }
        touch(&txn, &tagged, Timestamp::now()).await?;
        txn.commit().await?;
        Ok(TagChange::of(tagged))
    }

    /// Adds (`add`) or removes (`remove`) tags on many contacts at once.
    pub async fn retag_contacts(
        &self,
        workspace_id: WorkspaceId,
        contact_ids: &[ContactId],
        add: &[TagName],
        remove: &[TagName],
    ) -> Result<BulkTagOutcome, StoreError> {
        let outcome = self
            .retrying(workspace_id, async || {
                self.retag_contacts_once(workspace_id, contact_ids, add, remove)
                    .await
            })
            .await?;
        // Found none: perhaps because the workspace itself is gone.
        if outcome.updated == 0
            && !outcome.not_found.is_empty()
            && !self.workspace_exists(workspace_id).await?
        {
            return Err(StoreError::WorkspaceGone);
        }
        Ok(outcome)
    }

    async fn retag_contacts_once(
        &self,
        workspace_id: WorkspaceId,
        contact_ids: &[ContactId],
        add: &[TagName],
        remove: &[TagName],
    ) -> Result<BulkTagOutcome, StoreError> {
        let txn = self.begin_bulk_write().await?;
        let raw: Vec<i64> = contact_ids.iter().map(|c| c.0).collect();
        let found = lock_contacts(&txn, workspace_id, &raw).await?;
        let found_set: std::collections::HashSet<i64> = found.iter().copied().collect();
        let mut not_found: Vec<ContactId> = contact_ids
            .iter()
            .copied()
            .filter(|c| !found_set.contains(&c.0))
            .collect();
        not_found.dedup();
        let touched: Vec<TagName> = add.iter().chain(remove).cloned().collect();
        let changed = changes::tags_touched(&touched);
        if !found.is_empty() {
            if txn.get_database_backend() == DbBackend::Postgres {
                // Deletes first, planned per call; then the links, whose
                // inserts need cached plans (`bulk_pg::Planning`). A tag
                // both added and removed ends removed, as below.
                unlink_named_tags(&txn, workspace_id, &found, remove).await?;
                bulk_pg::plan(&txn, bulk_pg::Planning::Cached).await?;
                let removed: HashSet<String> = remove.iter().map(TagName::key).collect();
                let add: Vec<TagName> = add
                    .iter()
                    .filter(|t| !removed.contains(&t.key()))
                    .cloned()
                    .collect();
                apply_tag_changes(&txn, workspace_id, &found, None, &add, &[]).await?;
            } else {
                apply_tag_changes(&txn, workspace_id, &found, None, add, remove).await?;
            }
            touch(&txn, &found, Timestamp::now()).await?;
            changes::record(&txn, workspace_id, &found, &changed).await?;
        }
        txn.commit().await?;
        Ok(BulkTagOutcome {
            updated: found.len() as u64,
            touched: changed,
            contacts: found.into_iter().map(ContactId).collect(),
            not_found,
        })
    }
}

/// Locks the workspace's contacts that carry tag `id`, in id order, and
/// returns them.
async fn lock_tagged<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    id: TagId,
) -> Result<Vec<i64>, StoreError> {
    let tagged: Vec<i64> = contact_tag::Entity::find()
        .select_only()
        .column(contact_tag::Column::ContactId)
        .filter(contact_tag::Column::TagId.eq(id.0))
        .into_tuple()
        .all(conn)
        .await?;
    lock_contacts(conn, workspace_id, &tagged).await
}
