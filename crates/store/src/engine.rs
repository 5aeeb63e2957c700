//! Where the condition engine meets the database: a workspace's catalog
//! (attribute definitions and parsed segments), and running compiled
//! conditions as SQL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use segments_conditions::{
    Backend, ContactSnapshot, Limits, ParseContext, Registry, SegmentDefinition, SegmentKind,
    SegmentSet, SqlContext, Tree,
};
use segments_domain::{
    AttributeId, AttributeType, ContactId, FieldError, SegmentId, Timestamp, Violations,
    WorkspaceId,
};

use crate::attributes::definitions;
use crate::changes::ChangeSnapshot;
use crate::contact_rows::load_contacts;
use crate::contacts::ContactPage;
use crate::entities::contact;
use crate::segments::{SegmentRecord, SegmentRule};
use crate::{Store, StoreError};

/// Parsed catalogs by workspace, each with the catalog version it was
/// loaded at.
pub(crate) type CatalogCache = HashMap<WorkspaceId, (i64, Arc<Catalog>)>;

/// Marks the workspace's catalog as changed. Every write to segments or
/// attribute definitions calls it in its own transaction, so a reader that
/// sees the write also sees the new version. Being the first statement, its
/// row lock also queues concurrent catalog writes of one workspace.
pub(crate) async fn bump_catalog(
    txn: &DatabaseTransaction,
    workspace_id: WorkspaceId,
) -> Result<(), StoreError> {
    use crate::entities::workspace;
    let mut update = Query::update();
    update
        .table(workspace::Entity)
        .value(
            workspace::Column::CatalogVersion,
            Expr::col(workspace::Column::CatalogVersion).add(1),
        )
        .and_where(Expr::col(workspace::Column::Id).eq(workspace_id.0));
    txn.execute(&update).await?;
    Ok(())
}

/// Everything conditions of one workspace are validated and compiled against.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub workspace_id: WorkspaceId,
    /// The workspace's catalog version read before this catalog was loaded
    /// (see `Store::catalog`): the catalog is at least this new. Orders
    /// builds made from different definitions.
    pub version: i64,
    pub attributes: HashMap<String, (AttributeId, AttributeType)>,
    pub segments: SegmentSet,
    pub records: Vec<SegmentRecord>,
    /// Stored trees that no longer validate (an attribute they read was
    /// deleted, say). Such a segment matches nobody until it is fixed.
    pub broken: BTreeMap<SegmentId, Violations>,
}

impl Catalog {
    /// Validates a tree for the segment `current` (`None` for a new segment or
    /// a preview), refusing references that would close a cycle.
    pub fn parse(
        &self,
        value: &serde_json::Value,
        registry: &Registry,
        limits: Limits,
        current: Option<SegmentId>,
    ) -> Result<Tree, Violations> {
        let ctx = ParseContext {
            attributes: &self.attributes,
            segments: &self.segments,
            current_segment: current,
        };
        let tree = Tree::parse(value, registry, &ctx, limits)?;
        if let Some(current) = current {
            for referenced in tree.segment_refs() {
                if let Some(path) = self.segments.path(referenced, current) {
                    let cycle: Vec<String> = std::iter::once(current)
                        .chain(path)
                        .map(|id| id.to_string())
                        .collect();
                    return Err(Violations::one(
                        FieldError::new(
                            "cycle",
                            format!(
                                "segment references would form a cycle: {}",
                                cycle.join(" → ")
                            ),
                        )
                        .at(""),
                    ));
                }
            }
        }
        // After the cycle check: a cycle would look infinitely deep.
        self.check_expansion(&tree, limits, current)?;
        Ok(tree)
    }

    /// Refuses a tree whose references, inlined, nest deeper than
    /// `MAX_REFERENCE_DEPTH` segments or expand past `max_expanded_leaves`
    /// conditions — for the tree itself and, when it replaces segment
    /// `current`'s, for every segment that refers to `current`, which grows
    /// with it. One limit at save time, so evaluation never meets a deeper
    /// chain than it can follow.
    fn check_expansion(
        &self,
        tree: &Tree,
        limits: Limits,
        current: Option<SegmentId>,
    ) -> Result<(), Violations> {
        let own = self.segments.expansion(tree);
        let too_big = |chain: usize, leaves: usize, whose: &str| -> Option<Violations> {
            if chain.saturating_add(1) > segments_conditions::MAX_REFERENCE_DEPTH {
                return Some(Violations::one(
                    FieldError::new(
                        "too_deep",
                        format!(
                            "{whose} segment references would nest {} segments deep; at most {} are allowed",
                            chain.saturating_add(1),
                            segments_conditions::MAX_REFERENCE_DEPTH
                        ),
                    )
                    .at(""),
                ));
            }
            (leaves > limits.max_expanded_leaves).then(|| {
                Violations::one(
                    FieldError::new(
                        "too_large",
                        format!(
                            "{whose} segment references would expand to {leaves} conditions; at most {} are allowed",
                            limits.max_expanded_leaves
                        ),
                    )
                    .at(""),
                )
            })
        };
        if let Some(v) = too_big(own.chain, own.leaves, "its") {
            return Err(v);
        }
        let Some(current) = current else {
            return Ok(());
        };
        let dependents = self.segments.dependents(current);
        if dependents.is_empty() {
            return Ok(());
        }
        // The catalog as it would be with the new tree.
        let replaced = SegmentSet::new(self.segments.iter().map(|d| SegmentDefinition {
            id: d.id,
            name: d.name.clone(),
            kind: if d.id == current {
                SegmentKind::Dynamic(tree.clone())
            } else {
                d.kind.clone()
            },
        }));
        for dependent in dependents {
            let e = replaced.segment_expansion(dependent);
            if let Some(v) = too_big(
                e.chain.saturating_sub(1),
                e.leaves,
                &format!("segment {dependent} refers to this one, and its"),
            ) {
                return Err(v);
            }
        }
        Ok(())
    }

    /// The segments whose trees refer to `segment` (directly), as
    /// `id (name)`: while there are any, it cannot be deleted.
    pub fn referrers(&self, segment: SegmentId) -> Vec<String> {
        self.segments
            .iter()
            .filter(|d| self.segments.references(d.id).contains(&segment))
            .map(|d| format!("{} ({})", d.id, d.name))
            .collect()
    }

    /// The segments whose conditions read attribute `key`, as `id (name)`:
    /// while there are any, its definition cannot be deleted (they would
    /// match nobody).
    pub fn readers_of_attribute(&self, key: &str) -> Vec<String> {
        let read = segments_conditions::DataRef::Attribute(key.to_owned());
        self.segments
            .iter()
            .filter(
                |d| matches!(&d.kind, SegmentKind::Dynamic(tree) if tree.reads().contains(&read)),
            )
            .map(|d| format!("{} ({})", d.id, d.name))
            .collect()
    }

    /// The SQL context for evaluating against this catalog at `now`.
    pub fn sql_context(&self, backend: Backend, now: Timestamp) -> SqlContext<'_> {
        SqlContext {
            backend,
            now,
            workspace_id: self.workspace_id,
            segments: &self.segments,
            depth: 0,
        }
    }
}

impl Store {
    /// The dialect conditions compile to for this store.
    pub fn sql_backend(&self) -> Backend {
        match self.backend() {
            DbBackend::Postgres => Backend::Postgres,
            _ => Backend::Sqlite,
        }
    }

    /// The workspace's catalog version (see `bump_catalog`), or `None` when
    /// there is no such workspace.
    pub async fn catalog_version(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<Option<i64>, StoreError> {
        use crate::entities::workspace;
        Ok(workspace::Entity::find_by_id(workspace_id.0)
            .select_only()
            .column(workspace::Column::CatalogVersion)
            .into_tuple()
            .one(&self.db)
            .await?)
    }

    /// The workspace's catalog. Parsing every segment's tree on each request
    /// or job would dominate them once a workspace has hundreds of segments,
    /// so parsed catalogs are kept and reused while the workspace's catalog
    /// version is unchanged. One store serves one registry.
    ///
    /// The version is read before the catalog: a catalog written in between
    /// is then cached under an older version than its own, which only costs
    /// one more load at the next call — never a stale catalog reused.
    pub async fn catalog(&self, workspace_id: WorkspaceId) -> Result<Arc<Catalog>, StoreError> {
        let version = self.catalog_version(workspace_id).await?;
        if let Some(version) = version
            && let Ok(cache) = self.catalogs.lock()
            && let Some((seen, catalog)) = cache.get(&workspace_id)
            && *seen == version
        {
            return Ok(catalog.clone());
        }
        let mut catalog = self.load_catalog(workspace_id).await?;
        catalog.version = version.unwrap_or(0);
        let catalog = Arc::new(catalog);
        if let Some(version) = version
            && let Ok(mut cache) = self.catalogs.lock()
        {
            cache.insert(workspace_id, (version, catalog.clone()));
        }
        Ok(catalog)
    }

    /// As [`Store::catalog`] for a caller that read the workspace's catalog
    /// version itself, after its write committed (`Written::catalog_version`):
    /// the cached catalog when it is of that version or newer, without a
    /// read; otherwise as [`Store::catalog`].
    pub async fn catalog_as_of(
        &self,
        workspace_id: WorkspaceId,
        version: Option<i64>,
    ) -> Result<Arc<Catalog>, StoreError> {
        if let Some(version) = version
            && let Ok(cache) = self.catalogs.lock()
            && let Some((seen, catalog)) = cache.get(&workspace_id)
            && *seen >= version
        {
            return Ok(catalog.clone());
        }
        self.catalog(workspace_id).await
    }

    /// Loads the workspace's attribute definitions and segments, parsing every
    /// dynamic segment's tree.
    async fn load_catalog(&self, workspace_id: WorkspaceId) -> Result<Catalog, StoreError> {
        self.load_catalog_in(&self.db, workspace_id).await
    }

    /// `load_catalog` through `conn`: a catalog write loads it inside its
    /// own transaction, after the workspace's catalog lock, so the rules it
    /// checks (cycles, segments in use, attributes in use) hold against
    /// every catalog write committed before it and none can slip between.
    pub(crate) async fn load_catalog_in<C: ConnectionTrait>(
        &self,
        conn: &C,
        workspace_id: WorkspaceId,
    ) -> Result<Catalog, StoreError> {
        let registry = &*self.registry;
        let attributes = definitions(conn, workspace_id).await?;
        let records = crate::segments::segment_records_in(conn, workspace_id).await?;
        // Trees are validated against the set of segment ids; a placeholder
        // set suffices, since parsing only checks that references exist.
        let placeholders = SegmentSet::new(records.iter().map(|r| SegmentDefinition {
            id: r.id,
            name: r.name.clone(),
            kind: SegmentKind::Static,
        }));
        let mut broken = BTreeMap::new();
        let mut definitions = Vec::with_capacity(records.len());
        for record in &records {
            let kind = match &record.rule {
                SegmentRule::Static => SegmentKind::Static,
                SegmentRule::Dynamic(json) => {
                    let ctx = ParseContext {
                        attributes: &attributes,
                        segments: &placeholders,
                        current_segment: Some(record.id),
                    };
                    // Stored trees were validated under the limits of their
                    // time; re-checking today's limits would break them.
                    let lenient = Limits {
                        max_depth: usize::MAX,
                        max_leaves: usize::MAX,
                        max_expanded_leaves: usize::MAX,
                    };
                    match Tree::parse(json, registry, &ctx, lenient) {
                        Ok(tree) => SegmentKind::Dynamic(tree),
                        Err(v) => {
                            tracing::warn!(segment = %record.id, problem = %v, "stored segment no longer validates");
                            broken.insert(record.id, v);
                            SegmentKind::Dynamic(Tree::Any(Vec::new()))
                        }
                    }
                }
            };
            definitions.push(SegmentDefinition {
                id: record.id,
                name: record.name.clone(),
                kind,
            });
        }
        Ok(Catalog {
            workspace_id,
            version: 0,
            attributes,
            segments: SegmentSet::new(definitions),
            records,
            broken,
        })
    }

    /// How many of the workspace's contacts satisfy `condition`, stopped by
    /// the database past `timeout` (the configured one if `None`).
    ///
    /// This and the other membership queries run on connections of their
    /// own, a few at a time per workspace (`analytics`). On PostgreSQL each
    /// statement is planned for its actual parameters (which tag, which
    /// range) and the tables' current size: a cached generic plan made while
    /// a table was small (a fresh import) keeps scanning it sequentially
    /// after it has grown to millions of rows. Only these analytical reads
    /// pay for planning every time; the short statements of writes and jobs
    /// keep PostgreSQL's cached plans, whose planning cost them a third of
    /// the server's CPU at 500 writes/s when every statement was custom
    /// planned (BENCHMARKS.md).
    pub async fn count_where(
        &self,
        workspace_id: WorkspaceId,
        condition: Expr,
        timeout: Option<Duration>,
    ) -> Result<u64, StoreError> {
        let select = Query::select()
            .expr_as(
                Expr::col((contact::Entity, contact::Column::Id)).count(),
                "n",
            )
            .from(contact::Entity)
            .and_where(
                Expr::col((contact::Entity, contact::Column::WorkspaceId)).eq(workspace_id.0),
            )
            .and_where(condition)
            .to_owned();
        let query = self.analytics.begin(workspace_id, timeout).await?;
        let row = query
            .txn()?
            .query_one(&select)
            .await
            .map_err(|e| query.failed(e))?;
        query.commit().await?;
        let n: i64 = row.map(|r| r.try_get("", "n")).transpose()?.unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// A page of the workspace's contacts that satisfy `condition`, in id
    /// order (a membership query: see `count_where`).
    pub async fn contacts_where(
        &self,
        workspace_id: WorkspaceId,
        condition: Expr,
        after: Option<ContactId>,
        limit: u64,
    ) -> Result<ContactPage, StoreError> {
        let query = self.analytics.begin(workspace_id, None).await?;
        let page = contacts_page(query.txn()?, workspace_id, condition, after, limit)
            .await
            .map_err(|e| match e {
                StoreError::Database(e) => query.failed(e),
                other => other,
            })?;
        query.commit().await?;
        Ok(page)
    }

    /// Every id that satisfies `condition`, in order (for tests and checks on
    /// small workspaces; the worker streams instead).
    pub async fn ids_where(
        &self,
        workspace_id: WorkspaceId,
        condition: Expr,
    ) -> Result<Vec<ContactId>, StoreError> {
        let query = self.analytics.begin(workspace_id, None).await?;
        let ids: Vec<i64> = contact::Entity::find()
            .select_only()
            .column(contact::Column::Id)
            .filter(contact::Column::WorkspaceId.eq(workspace_id.0))
            .filter(condition)
            .order_by_asc(contact::Column::Id)
            .into_tuple()
            .all(query.txn()?)
            .await
            .map_err(|e| query.failed(e))?;
        query.commit().await?;
        Ok(ids.into_iter().map(ContactId).collect())
    }

    /// Streams the ids that satisfy `condition` into `batches`, `batch` at a
    /// time, so that memory stays flat whatever the number of matches; the
    /// caller consumes them concurrently (a bounded channel paces the
    /// database to the consumer). Returns how many ids were sent and the
    /// snapshot they were read in: the ids reflect exactly the changes that
    /// snapshot sees (`ChangeSnapshot::sees`). Stops early, without error,
    /// when the consumer hangs up.
    pub async fn send_ids_where(
        &self,
        workspace_id: WorkspaceId,
        condition: Expr,
        batch: usize,
        mut batches: futures::channel::mpsc::Sender<Vec<i64>>,
    ) -> Result<(u64, ChangeSnapshot), StoreError> {
        use futures::{SinkExt, StreamExt};
        let batch = batch.max(1);
        // One snapshot for the snapshot read and the ids: REPEATABLE READ on
        // PostgreSQL; on SQLite every read transaction is one snapshot.
        let txn =
            crate::transactions::begin(&self.db, crate::transactions::Purpose::Snapshot).await?;
        crate::plan_per_call(&txn, None).await?;
        let snapshot = crate::changes::current_snapshot(&txn).await?;
        let mut sent = 0u64;
        {
            let mut ids = contact::Entity::find()
                .select_only()
                .column(contact::Column::Id)
                .filter(contact::Column::WorkspaceId.eq(workspace_id.0))
                .filter(condition)
                .into_tuple::<i64>()
                .stream(&txn)
                .await?;
            let mut pending = Vec::with_capacity(batch);
            loop {
                let next = ids.next().await.transpose()?;
                let full = pending.len() >= batch;
                if (full || next.is_none()) && !pending.is_empty() {
                    let n = pending.len() as u64;
                    let out = std::mem::replace(&mut pending, Vec::with_capacity(batch));
                    if batches.send(out).await.is_err() {
                        return Ok((sent, snapshot));
                    }
                    sent += n;
                }
                match next {
                    Some(id) => pending.push(id),
                    None => break,
                }
            }
        }
        txn.commit().await?;
        Ok((sent, snapshot))
    }

    /// Contacts as conditions see them in memory (with their static
    /// memberships), in the order asked; missing ids are skipped.
    pub async fn snapshots(
        &self,
        workspace_id: WorkspaceId,
        ids: &[ContactId],
    ) -> Result<Vec<ContactSnapshot>, StoreError> {
        self.snapshots_reading(workspace_id, ids, true).await
    }

    /// Like `snapshots`; without `static_memberships` the snapshots carry
    /// none (one read fewer, for evaluations no static segment takes part in).
    pub async fn snapshots_reading(
        &self,
        workspace_id: WorkspaceId,
        ids: &[ContactId],
        static_memberships: bool,
    ) -> Result<Vec<ContactSnapshot>, StoreError> {
        let contacts = self.get_contacts(workspace_id, ids).await?;
        let raw: Vec<i64> = contacts.iter().map(|c| c.id.0).collect();
        let mut memberships = if static_memberships {
            Store::static_memberships(&self.db, &raw).await?
        } else {
            HashMap::new()
        };
        Ok(contacts
            .into_iter()
            .map(|contact| ContactSnapshot {
                static_segments: memberships
                    .remove(&contact.id.0)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                contact,
            })
            .collect())
    }
}

/// A page of contacts satisfying `condition`, read through `conn`.
pub(crate) async fn contacts_page<C: ConnectionTrait>(
    conn: &C,
    workspace_id: WorkspaceId,
    condition: Expr,
    after: Option<ContactId>,
    limit: u64,
) -> Result<ContactPage, StoreError> {
    let mut query = contact::Entity::find()
        .filter(contact::Column::WorkspaceId.eq(workspace_id.0))
        .filter(condition)
        .order_by_asc(contact::Column::Id)
        .limit(limit + 1);
    if let Some(after) = after {
        query = query.filter(contact::Column::Id.gt(after.0));
    }
    let (models, next_after) =
        crate::batch::split_page(query.all(conn).await?, limit, |m| ContactId(m.id));
    Ok(ContactPage {
        items: load_contacts(conn, models).await?,
        next_after,
    })
}
