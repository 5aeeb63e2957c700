//! Contacts: single writes, reads, pages and bulk upserts.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect, QueryTrait, Statement,
};
use segments_domain::contact::{ContactFields, ResolvedAttributes, resolve_attributes};
use segments_domain::{
    Contact, ContactId, ContactPatch, FieldError, TagName, Timestamp, Violations, WorkspaceId,
};

use crate::attributes::definitions;
use crate::batch::{MAX_IN_LIST, rows_per_statement};
use crate::bulk_pg;
use crate::changes::{self, ChangeStamp};
use crate::contact_rows::{
    apply_tag_changes, ensure_tags, fields_of, link_tags, load_contacts, unlink_named_tags,
    unlink_tags, write_attributes,
};
use crate::entities::contact;
use crate::error::is_unique_violation;
use crate::locks::lock_contacts_by_external_id;
use crate::{Store, StoreError};

/// Whether a patch only adds or removes tags (no fields, attributes or
/// replaced tag set): the write `retag_contact` serves.
fn only_retags(patch: &ContactPatch) -> bool {
    !patch.touches_fields()
        && patch.attributes.is_empty()
        && patch.tags.is_none()
        && !(patch.add_tags.is_empty() && patch.remove_tags.is_empty())
}

/// A contact as one write left it, with the stamp of that write's change
/// (the contact's version and the writing transaction).
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub contact: Contact,
    pub version: ChangeStamp,
    /// The workspace's catalog version, when the write read it after it
    /// committed (in the same statement as its read-back): the version an
    /// evaluation of this write must use at least, known without a read.
    pub catalog_version: Option<i64>,
    /// The change keys the write recorded in the change log: what it
    /// touched, for the materializer to find the segments reading it.
    pub touched: Vec<String>,
}

/// A contact deleted: the stamp of the deletion and the keys it recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub version: ChangeStamp,
    pub touched: Vec<String>,
}

/// One page of contacts in id order.
#[derive(Debug, Clone)]
pub struct ContactPage {
    pub items: Vec<Contact>,
    /// The id to continue after, when more contacts follow.
    pub next_after: Option<ContactId>,
}

/// A stored item of a bulk upsert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpsertedContact {
    /// Its position in the request.
    pub index: usize,
    pub id: ContactId,
    /// Whether the contact was new (as opposed to updated).
    pub created: bool,
}

/// What a bulk upsert did: every item is either stored or rejected.
#[derive(Debug, Clone, Default)]
pub struct BulkOutcome {
    pub stored: Vec<UpsertedContact>,
    /// Rejected items by position, with pointers relative to the item.
    pub rejected: Vec<(usize, Violations)>,
    /// The change keys recorded for the stored contacts, all of them
    /// (sorted, once each).
    pub touched: Vec<String>,
}

impl BulkOutcome {
    /// The contacts stored, in the order of their items.
    pub fn contacts(&self) -> Vec<ContactId> {
        self.stored.iter().map(|s| s.id).collect()
    }
}

/// Contacts written per statement in bulk upserts.
const UPSERT_CHUNK: usize = 1_000;

const WRITTEN_COLUMNS: [contact::Column; 11] = [
    contact::Column::WorkspaceId,
    contact::Column::ExternalId,
    contact::Column::Name,
    contact::Column::Phone,
    contact::Column::Email,
    contact::Column::Channel,
    contact::Column::OptedIn,
    contact::Column::OptedInAt,
    contact::Column::FirstContactedAt,
    contact::Column::CreatedAt,
    contact::Column::UpdatedAt,
];

/// The columns an upsert overwrites on conflict: all but identity and creation time.
const UPDATED_COLUMNS: [contact::Column; 8] = [
    contact::Column::Name,
    contact::Column::Phone,
    contact::Column::Email,
    contact::Column::Channel,
    contact::Column::OptedIn,
    contact::Column::OptedInAt,
    contact::Column::FirstContactedAt,
    contact::Column::UpdatedAt,
];

fn row_values(
    workspace_id: WorkspaceId,
    f: &ContactFields,
    created_at: Timestamp,
    updated_at: Timestamp,
) -> [Expr; 11] {
    [
        workspace_id.0.into(),
        f.external_id.as_ref().map(|v| v.as_str().to_owned()).into(),
        f.name.clone().into(),
        f.phone.as_ref().map(|v| v.as_str().to_owned()).into(),
        f.email.as_ref().map(|v| v.as_str().to_owned()).into(),
        f.channel.as_ref().map(|v| v.as_str().to_owned()).into(),
        f.opted_in.into(),
        f.opted_in_at.map(Timestamp::get).into(),
        f.first_contacted_at.map(Timestamp::get).into(),
        created_at.get().into(),
        updated_at.get().into(),
    ]
}

fn external_id_taken(fields: &ContactFields) -> StoreError {
    StoreError::Conflict {
        code: "external_id_taken",
        message: format!(
            "another contact already has external_id `{}`",
            fields
                .external_id
                .as_ref()
                .map(|e| e.as_str())
                .unwrap_or_default()
        ),
        pointer: Some("/external_id".into()),
    }
}

impl Store {
    pub async fn create_contact(
        &self,
        workspace_id: WorkspaceId,
        patch: &ContactPatch,
    ) -> Result<Written, StoreError> {
        self.retrying(workspace_id, async || {
            self.create_contact_once(workspace_id, patch).await
        })
        .await
    }

    async fn create_contact_once(
        &self,
        workspace_id: WorkspaceId,
        patch: &ContactPatch,
    ) -> Result<Written, StoreError> {
        let now = Timestamp::now();
        let mut fields = ContactFields::default();
        fields.apply(patch, now)?;
        let txn = self.begin_write().await?;
        // Most writes (tags, opt-in, channel) name no attribute: skip the read.
        let defs = if patch.attributes.is_empty() {
            HashMap::new()
        } else {
            definitions(&txn, workspace_id).await?
        };
        let attributes = resolve_attributes(&patch.attributes, |k| defs.get(k.as_str()).copied())?;
        let mut insert = Query::insert();
        insert
            .into_table(contact::Entity)
            .columns(WRITTEN_COLUMNS)
            .values(row_values(workspace_id, &fields, now, now))?
            .returning_all();
        let row = match txn.query_one(&insert).await {
            Ok(row) => row,
            Err(e) if is_unique_violation(&e) => return Err(external_id_taken(&fields)),
            Err(e) => return Err(e.into()),
        };
        let stored = contact::Model::from_query_result(
            &row.ok_or_else(|| sea_orm::DbErr::RecordNotInserted)?,
            "",
        )?;
        let id = stored.id;
        apply_tag_changes(
            &txn,
            workspace_id,
            &[id],
            patch.tags.as_deref(),
            &patch.add_tags,
            &patch.remove_tags,
        )
        .await?;
        write_attributes(&txn, &[(id, &attributes)]).await?;
        let changed = changes::everything();
        let version = changes::record_one(&txn, workspace_id, id, &changed).await?;
        // Read back inside the transaction, from the returned row: the
        // answer is exactly what this write committed.
        let contact = load_one(&txn, stored).await?;
        txn.commit().await?;
        Ok(Written {
            contact,
            version,
            catalog_version: None,
            touched: changed,
        })
    }

    pub async fn get_contact(
        &self,
        workspace_id: WorkspaceId,
        id: ContactId,
    ) -> Result<Contact, StoreError> {
        let model = contact::Entity::find_by_id(id.0)
            .filter(contact::Column::WorkspaceId.eq(workspace_id.0))
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::not_found("contact", id))?;
        let mut contacts = load_contacts(&self.db, vec![model]).await?;
        contacts
            .pop()
            .ok_or_else(|| StoreError::not_found("contact", id))
    }

    /// The contacts of `ids` that exist in the workspace, in the order asked,
    /// each once.
    pub async fn get_contacts(
        &self,
        workspace_id: WorkspaceId,
        ids: &[ContactId],
    ) -> Result<Vec<Contact>, StoreError> {
        let mut models = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_IN_LIST) {
            let found = contact::Entity::find()
                .filter(contact::Column::WorkspaceId.eq(workspace_id.0))
                .filter(contact::Column::Id.is_in(chunk.iter().map(|id| id.0)))
                .all(&self.db)
                .await?;
            models.extend(found.into_iter().map(|m| (m.id, m)));
        }
        let ordered = ids.iter().filter_map(|id| models.remove(&id.0)).collect();
        load_contacts(&self.db, ordered).await
    }

    /// Contacts in id order, after `after`. New contacts get higher ids, so a
    /// client paging while others insert never sees a row twice or skips one
    /// that existed when it started.
    pub async fn list_contacts(
        &self,
        workspace_id: WorkspaceId,
        after: Option<ContactId>,
        limit: u64,
    ) -> Result<ContactPage, StoreError> {
        // A plain listing by id: no membership query, no planning per call.
        crate::engine::contacts_page(&self.db, workspace_id, Expr::val(true), after, limit).await
    }

    pub async fn update_contact(
        &self,
        workspace_id: WorkspaceId,
        id: ContactId,
        patch: &ContactPatch,
    ) -> Result<Written, StoreError> {
        self.retrying(workspace_id, async || {
            self.update_contact_once(workspace_id, id, patch).await
        })
        .await
    }

    async fn update_contact_once(
        &self,
        workspace_id: WorkspaceId,
        id: ContactId,
        patch: &ContactPatch,
    ) -> Result<Written, StoreError> {
        if self.backend() == DbBackend::Postgres && only_retags(patch) {
            return self.retag_contact(workspace_id, id, patch).await;
        }
        let now = Timestamp::now();
        let txn = self.begin_write().await?;
        let mut update = Query::update();
        update
            .table(contact::Entity)
            .and_where(Expr::col(contact::Column::Id).eq(id.0))
            .and_where(Expr::col(contact::Column::WorkspaceId).eq(workspace_id.0));
        let mut fields = None;
        if patch.touches_fields() {
            // Field rules read the current values (the opt-in stamp): read
            // them under a row lock so concurrent patches apply in turn.
            let mut select = contact::Entity::find_by_id(id.0)
                .filter(contact::Column::WorkspaceId.eq(workspace_id.0));
            if self.backend() == DbBackend::Postgres {
                select = select.lock_exclusive();
            }
            let model = select
                .one(&txn)
                .await?
                .ok_or_else(|| StoreError::not_found("contact", id))?;
            let mut patched = fields_of(&model);
            patched.apply(patch, now)?;
            let values = row_values(workspace_id, &patched, now, now);
            for (column, value) in WRITTEN_COLUMNS.into_iter().zip(values) {
                if !matches!(
                    column,
                    contact::Column::WorkspaceId | contact::Column::CreatedAt
                ) {
                    update.value(column, value);
                }
            }
            fields = Some(patched);
        } else {
            // Tags and attributes only: the row just records the change,
            // and the UPDATE itself takes the row lock.
            update.value(contact::Column::UpdatedAt, now.get());
        }
        update.returning_all();
        let stored = match txn.query_one(&update).await {
            Ok(Some(row)) => contact::Model::from_query_result(&row, "")?,
            Ok(None) => return Err(StoreError::not_found("contact", id)),
            Err(e) => match &fields {
                Some(f) if is_unique_violation(&e) => return Err(external_id_taken(f)),
                _ => return Err(e.into()),
            },
        };
        // After the contact is known to exist (a missing contact answers
        // 404 before any 422); a failure here rolls the update back.
        // Most writes (tags, opt-in, channel) name no attribute: skip the read.
        let defs = if patch.attributes.is_empty() {
            HashMap::new()
        } else {
            definitions(&txn, workspace_id).await?
        };
        let attributes = resolve_attributes(&patch.attributes, |k| defs.get(k.as_str()).copied())?;
        apply_tag_changes(
            &txn,
            workspace_id,
            &[id.0],
            patch.tags.as_deref(),
            &patch.add_tags,
            &patch.remove_tags,
        )
        .await?;
        write_attributes(&txn, &[(id.0, &attributes)]).await?;
        let changed = changes::touched(patch);
        let version = changes::record_one(&txn, workspace_id, id.0, &changed).await?;
        let contact = load_one(&txn, stored).await?;
        txn.commit().await?;
        Ok(Written {
            contact,
            version,
            catalog_version: None,
            touched: changed,
        })
    }

    /// Adds and removes one contact's tags on PostgreSQL, through the
    /// `segments_retag_contact` function (see its migration): the most
    /// frequent write, in one round trip plus the read of the answer. The
    /// answer is read just after the write commits, so a write to the same
    /// contact committed in between may already show in it.
    async fn retag_contact(
        &self,
        workspace_id: WorkspaceId,
        id: ContactId,
        patch: &ContactPatch,
    ) -> Result<Written, StoreError> {
        // A tag both added and removed in one request ends removed.
        let removed: BTreeSet<String> = patch.remove_tags.iter().map(TagName::key).collect();
        let mut added: BTreeMap<String, &str> = BTreeMap::new();
        for tag in &patch.add_tags {
            let key = tag.key();
            if !removed.contains(&key) {
                added.entry(key).or_insert(tag.as_str());
            }
        }
        let added: Vec<serde_json::Value> = added
            .into_iter()
            .map(|(key, name)| serde_json::json!([name, key]))
            .collect();
        let removed: Vec<serde_json::Value> =
            removed.into_iter().map(serde_json::Value::String).collect();
        let changed = changes::touched(patch);
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            // The function and the transaction id run in one statement, so
            // in the one implicit transaction that wrote the change.
            "SELECT segments_retag_contact($1, $2, $3, $4, $5, $6) AS version, \
             pg_current_xact_id()::text::bigint AS xid",
            [
                workspace_id.0.into(),
                id.0.into(),
                serde_json::Value::Array(added).into(),
                serde_json::Value::Array(removed).into(),
                changed.join(" ").into(),
                Timestamp::now().get().into(),
            ],
        );
        let (version, xid): (Option<i64>, Option<i64>) =
            match self.db.query_one_raw(statement).await? {
                Some(row) => (row.try_get("", "version")?, row.try_get("", "xid")?),
                None => (None, None),
            };
        let version = version.ok_or_else(|| StoreError::not_found("contact", id))?;
        let version = ChangeStamp::new(version, xid);
        // The row and the catalog version in one statement, after the
        // commit: an evaluation needs a catalog read after the write
        // committed (a segment redefined later is rebuilt from a snapshot
        // that holds this write), and this one costs no round trip.
        let mut read_back = contact::Entity::find_by_id(id.0)
            .filter(contact::Column::WorkspaceId.eq(workspace_id.0))
            .into_query();
        read_back.expr_as(
            Expr::cust_with_values(
                "(SELECT catalog_version FROM workspaces WHERE id = $1)",
                [workspace_id.0],
            ),
            "catalog_version",
        );
        let row = self
            .db
            .query_one(&read_back)
            .await?
            .ok_or_else(|| StoreError::not_found("contact", id))?;
        let catalog_version: Option<i64> = row.try_get("", "catalog_version")?;
        let model = contact::Model::from_query_result(&row, "")?;
        let contact = load_contacts(&self.db, vec![model])
            .await?
            .pop()
            .ok_or_else(|| StoreError::not_found("contact", id))?;
        Ok(Written {
            contact,
            version,
            catalog_version,
            touched: changed,
        })
    }

    /// Deletes a contact; returns the stamp of the deletion.
    pub async fn delete_contact(
        &self,
        workspace_id: WorkspaceId,
        id: ContactId,
    ) -> Result<Deleted, StoreError> {
        self.retrying(workspace_id, async || {
            self.delete_contact_once(workspace_id, id).await
        })
        .await
    }

    async fn delete_contact_once(
        &self,
        workspace_id: WorkspaceId,
        id: ContactId,
    ) -> Result<Deleted, StoreError> {
        let txn = self.begin_write().await?;
        let result = contact::Entity::delete_many()
            .filter(contact::Column::WorkspaceId.eq(workspace_id.0))
            .filter(contact::Column::Id.eq(id.0))
            .exec(&txn)
            .await?;
        if result.rows_affected == 0 {
            return Err(StoreError::not_found("contact", id));
        }
        let changed = changes::everything();
        let version = changes::record_one(&txn, workspace_id, id.0, &changed).await?;
        txn.commit().await?;
        Ok(Deleted {
            version,
            touched: changed,
        })
    }

    /// Creates or updates contacts by external id. Each item is a patch
    /// applied to the stored contact, or to an empty one when there is none:
    /// absent fields are left alone, `null` clears, `tags` replaces the set.
    /// Valid items are stored in one transaction; invalid ones are reported.
    /// Items carry their position in the caller's request, which reports use.
    pub async fn upsert_contacts(
        &self,
        workspace_id: WorkspaceId,
        items: &[(usize, ContactPatch)],
    ) -> Result<BulkOutcome, StoreError> {
        self.retrying(workspace_id, async || {
            self.upsert_contacts_once(workspace_id, items).await
        })
        .await
    }

    async fn upsert_contacts_once(
        &self,
        workspace_id: WorkspaceId,
        items: &[(usize, ContactPatch)],
    ) -> Result<BulkOutcome, StoreError> {
        let now = Timestamp::now();
        let mut outcome = BulkOutcome::default();
        let defs = definitions(&self.db, workspace_id).await?;
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(items.len());
        let mut valid = Vec::with_capacity(items.len());
        for (index, patch) in items {
            let index = *index;
            let Some(Some(external_id)) = &patch.external_id else {
                outcome.rejected.push((
                    index,
                    Violations::one(
                        FieldError::new("required", "external_id is required to upsert")
                            .at("/external_id"),
                    ),
                ));
                continue;
            };
            if let Some(first) = seen.insert(external_id.as_str(), index) {
                outcome.rejected.push((
                    index,
                    Violations::one(
                        FieldError::new(
                            "duplicate",
                            format!("external_id `{external_id}` also appears at index {first}"),
                        )
                        .at("/external_id"),
                    ),
                ));
                continue;
            }
            match resolve_attributes(&patch.attributes, |k| defs.get(k.as_str()).copied()) {
                Ok(attributes) => valid.push((index, external_id.as_str(), patch, attributes)),
                Err(violations) => outcome.rejected.push((index, violations)),
            }
        }

        // The stored contacts are locked up front, in id order (see
        // `locks`): two bulk upserts over the same contacts, in whatever
        // order their callers listed them, queue instead of deadlocking. The
        // lock also keeps the values read here current until the patch is
        // applied to them. New contacts are inserted in the request's order
        // (their ids follow it); two requests creating the same new contacts
        // in opposite orders can still deadlock, and are retried.
        let txn = self.begin_bulk_write().await?;
        // Bulk upserts of one workspace take turns (PostgreSQL; SQLite's
        // single writer serializes them anyway). Two of them creating the
        // same new contacts in opposite orders wait on each other's
        // uncommitted rows: that deadlock, retried, recurred whenever the
        // loser restarted before the winner committed (seen under load).
        if self.backend() == DbBackend::Postgres {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [bulk_lock_key(workspace_id).into()],
            ))
            .await?;
        }
        let external_ids: Vec<&str> = valid.iter().map(|v| v.1).collect();
        let existing = lock_contacts_by_external_id(&txn, workspace_id, &external_ids).await?;
        // Each patch applied to its stored contact, or to an empty one.
        let mut upserts = Vec::with_capacity(valid.len());
        for (index, external_id, patch, attributes) in valid {
            let stored = existing.get(external_id);
            let mut fields = stored.map(fields_of).unwrap_or_default();
            if let Err(v) = fields.apply(patch, now) {
                outcome.rejected.push((index, v));
                continue;
            }
            upserts.push(Upsert {
                index,
                patch,
                fields,
                attributes,
                created_at: stored.map_or(now, |m| Timestamp::from_stored(m.created_at)),
                stored: stored.map(|m| m.id),
            });
        }
        if self.backend() == DbBackend::Postgres {
            write_upserts_set_based(&txn, workspace_id, &upserts, now, &mut outcome).await?;
        } else {
            write_upserts_in_chunks(&txn, workspace_id, &upserts, now, &mut outcome).await?;
        }
        let created: HashMap<usize, bool> = outcome
            .stored
            .iter()
            .map(|s| (s.index, s.created))
            .collect();
        let changed: BTreeSet<String> = upserts
            .iter()
            .filter_map(|u| created.get(&u.index).map(|c| u.keys(*c)))
            .flatten()
            .collect();
        outcome.touched = changed.into_iter().collect();
        txn.commit().await?;
        outcome.stored.sort_by_key(|s| s.index);
        outcome.rejected.sort_by_key(|r| r.0);
        Ok(outcome)
    }
}

/// One valid item of a bulk upsert, its patch applied.
struct Upsert<'a> {
    /// Its position in the request.
    index: usize,
    patch: &'a ContactPatch,
    fields: ContactFields,
    attributes: ResolvedAttributes,
    created_at: Timestamp,
    /// The stored contact's id; `None` when there was none.
    stored: Option<i64>,
}

impl Upsert<'_> {
    fn external_id(&self) -> &str {
        self.fields.external_id.as_ref().map_or("", |e| e.as_str())
    }

    /// The change keys of this write: everything for a new contact.
    /// What writing this item touched: everything for a contact it
    /// created, what the patch names otherwise.
    fn keys(&self, created: bool) -> Vec<String> {
        if created {
            changes::everything()
        } else {
            changes::touched(self.patch)
        }
    }

    fn change_keys(&self, created: bool) -> String {
        self.keys(created).join(" ")
    }

    /// The (contact, tag key) links this write leaves: the replaced set and
    /// additions, less removals (a tag both added and removed ends removed).
    fn links(&self, id: i64) -> impl Iterator<Item = (i64, String)> + '_ {
        let removed: HashSet<String> = self.patch.remove_tags.iter().map(TagName::key).collect();
        self.patch
            .tags
            .iter()
            .flatten()
            .chain(&self.patch.add_tags)
            .map(TagName::key)
            .filter(move |key| !removed.contains(key))
            .map(move |key| (id, key))
    }
}

/// PostgreSQL: every row of the batch in a few set-based statements
/// (`bulk_pg`), whatever its size. Rows of contacts that exist are deleted
/// first, with plans made per call; the inserts run with cached plans.
async fn write_upserts_set_based<C: ConnectionTrait>(
    txn: &C,
    workspace_id: WorkspaceId,
    upserts: &[Upsert<'_>],
    now: Timestamp,
    outcome: &mut BulkOutcome,
) -> Result<(), StoreError> {
    let stored: Vec<(&Upsert<'_>, i64)> = upserts
        .iter()
        .filter_map(|u| u.stored.map(|id| (u, id)))
        .collect();
    delete_replaced_rows(txn, workspace_id, &stored).await?;
    bulk_pg::plan(txn, bulk_pg::Planning::Cached).await?;
    let rows: Vec<(&ContactFields, Timestamp)> =
        upserts.iter().map(|u| (&u.fields, u.created_at)).collect();
    let written = bulk_pg::upsert_contacts(txn, workspace_id, &rows, now).await?;
    let mut ids = Vec::with_capacity(upserts.len());
    for u in upserts {
        let row = written
            .get(u.external_id())
            .copied()
            .ok_or(sea_orm::DbErr::RecordNotInserted)?;
        ids.push(row);
    }
    // Contacts another writer created after the lock was taken: updated,
    // not inserted, so their rows are replaced as a stored contact's are.
    let late: Vec<(&Upsert<'_>, i64)> = upserts
        .iter()
        .zip(&ids)
        .filter(|(u, row)| u.stored.is_none() && !row.inserted)
        .map(|(u, row)| (u, row.id))
        .collect();
    delete_replaced_rows(txn, workspace_id, &late).await?;

    let names: Vec<TagName> = upserts
        .iter()
        .flat_map(|u| u.patch.tags.iter().flatten().chain(&u.patch.add_tags))
        .cloned()
        .collect();
    let tag_ids = ensure_tags(txn, workspace_id, &names).await?;
    let mut pairs = Vec::new();
    let mut values = Vec::new();
    let mut change_rows = Vec::with_capacity(upserts.len());
    for (u, row) in upserts.iter().zip(&ids) {
        pairs.extend(
            u.links(row.id)
                .filter_map(|(contact, key)| tag_ids.get(&key).map(|tag| (contact, *tag))),
        );
        for (attribute, value) in &u.attributes {
            if let Some(value) = value {
                values.push((row.id, attribute.0, value));
            }
        }
        change_rows.push((row.id, u.change_keys(row.inserted)));
        outcome.stored.push(UpsertedContact {
            index: u.index,
            id: ContactId(row.id),
            created: row.inserted,
        });
    }
    link_tags(txn, &pairs).await?;
    bulk_pg::set_attributes(txn, &values).await?;
    bulk_pg::record_changes(txn, workspace_id, change_rows, now).await?;
    Ok(())
}

/// PostgreSQL: deletes what upserting these stored contacts replaces or
/// removes — replaced tag sets, removed tags, cleared attributes.
async fn delete_replaced_rows<C: ConnectionTrait>(
    txn: &C,
    workspace_id: WorkspaceId,
    stored: &[(&Upsert<'_>, i64)],
) -> Result<(), StoreError> {
    let replaced: Vec<i64> = stored
        .iter()
        .filter(|(u, _)| u.patch.tags.is_some())
        .map(|(_, id)| *id)
        .collect();
    let removals: Vec<(i64, String)> = stored
        .iter()
        .flat_map(|(u, id)| u.patch.remove_tags.iter().map(|t| (*id, t.key())))
        .collect();
    let cleared: Vec<(i64, i64)> = stored
        .iter()
        .flat_map(|(u, id)| {
            u.attributes
                .iter()
                .filter(|(_, value)| value.is_none())
                .map(|(attribute, _)| (*id, attribute.0))
        })
        .collect();
    bulk_pg::unlink_all_tags(txn, replaced).await?;
    bulk_pg::unlink_named_tags(txn, workspace_id, removals).await?;
    bulk_pg::unset_attributes(txn, cleared).await?;
    Ok(())
}

/// SQLite: multi-row statements, chunk by chunk (bind-parameter limits).
async fn write_upserts_in_chunks<C: ConnectionTrait>(
    txn: &C,
    workspace_id: WorkspaceId,
    upserts: &[Upsert<'_>],
    now: Timestamp,
    outcome: &mut BulkOutcome,
) -> Result<(), StoreError> {
    for chunk in upserts.chunks(UPSERT_CHUNK) {
        let mut insert = Query::insert();
        insert
            .into_table(contact::Entity)
            .columns(WRITTEN_COLUMNS)
            .on_conflict(
                OnConflict::columns([contact::Column::WorkspaceId, contact::Column::ExternalId])
                    .update_columns(UPDATED_COLUMNS)
                    .to_owned(),
            )
            .returning(
                Query::returning().columns([contact::Column::Id, contact::Column::ExternalId]),
            );
        for u in chunk {
            insert.values(row_values(workspace_id, &u.fields, u.created_at, now))?;
        }
        debug_assert!(chunk.len() <= rows_per_statement(WRITTEN_COLUMNS.len()));
        let mut ids: HashMap<String, i64> = HashMap::with_capacity(chunk.len());
        for row in txn.query_all(&insert).await? {
            ids.insert(row.try_get("", "external_id")?, row.try_get("", "id")?);
        }

        let mut tag_names = Vec::new();
        let mut replaced = Vec::new();
        let mut attribute_rows = Vec::with_capacity(chunk.len());
        let mut change_rows = Vec::with_capacity(chunk.len());
        let mut written = Vec::with_capacity(chunk.len());
        for u in chunk {
            let id = ids
                .get(u.external_id())
                .copied()
                .ok_or(sea_orm::DbErr::RecordNotInserted)?;
            if let Some(tags) = &u.patch.tags {
                replaced.push(id);
                tag_names.extend_from_slice(tags);
            }
            tag_names.extend_from_slice(&u.patch.add_tags);
            attribute_rows.push((id, &u.attributes));
            let created = u.stored.is_none();
            change_rows.push((id, u.change_keys(created)));
            written.push((u, id));
            outcome.stored.push(UpsertedContact {
                index: u.index,
                id: ContactId(id),
                created,
            });
        }
        unlink_tags(txn, &replaced, None).await?;
        let tag_ids = ensure_tags(txn, workspace_id, &tag_names).await?;
        let mut pairs = Vec::new();
        for (u, id) in &written {
            pairs.extend(
                u.links(*id)
                    .filter_map(|(contact, key)| tag_ids.get(&key).map(|tag| (contact, *tag))),
            );
            if !u.patch.remove_tags.is_empty() {
                unlink_named_tags(txn, workspace_id, &[*id], &u.patch.remove_tags).await?;
            }
        }
        link_tags(txn, &pairs).await?;
        write_attributes(txn, &attribute_rows).await?;
        changes::record_each(txn, workspace_id, &change_rows).await?;
    }
    Ok(())
}

/// The advisory lock bulk upserts of one workspace take turns on: the
/// workspace id in the low bits, a tag of this use in the high ones (no
/// other advisory lock of ours shares the space).
fn bulk_lock_key(workspace_id: WorkspaceId) -> i64 {
    const BULK_UPSERT: i64 = 0x5e6 << 48;
    BULK_UPSERT ^ (workspace_id.0 & 0x0000_ffff_ffff_ffff)
}

/// One stored row with its tags and attributes.
async fn load_one<C: ConnectionTrait>(
    conn: &C,
    model: contact::Model,
) -> Result<Contact, StoreError> {
    let id = model.id;
    load_contacts(conn, vec![model])
        .await?
        .pop()
        .ok_or_else(|| StoreError::not_found("contact", ContactId(id)))
}
