//! Segments' persistence: sea-orm entities and the repositories the API and
//! the worker call. Owns every SQL statement; knows nothing of HTTP.
//!
//! Both SQLite and PostgreSQL are first-class: statements are built with
//! sea-query and mean the same on each, except bulk writes on PostgreSQL,
//! which take its set-based fast path (`bulk_pg`).

mod analytics;
mod attributes;
mod batch;
mod bulk_pg;
pub mod changes;
mod contact_rows;
mod contacts;
mod db;
mod drift;
mod engine;
pub mod entities;
mod error;
mod locks;
mod retry;
mod segments;
mod tags;
mod transactions;
mod workspaces;

pub use analytics::AnalyticsSettings;
pub use attributes::AttributeDefinition;
pub use changes::{ChangeSnapshot, ChangeStamp};
pub use contacts::{BulkOutcome, ContactPage, Deleted, UpsertedContact, Written};
pub use db::DatabaseSettings;
pub use drift::MembershipTruth;
pub use engine::Catalog;
pub use error::StoreError;
pub use segments::{MembershipChange, SegmentPage, SegmentRecord, SegmentRule};
pub use tags::{BulkTagOutcome, TagChange, TagPage, TagSummary};
pub use workspaces::{ApiKeyRecord, IssuedKey, Principal, WorkspaceRecord};

use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend};

/// The tables whose size bulk loads change (see `Store::refresh_statistics`).
const STATISTICS_TABLES: [&str; 5] = [
    "contacts",
    "contact_tags",
    "contact_attributes",
    "tags",
    "segment_members",
];

/// Handle on the database. Cheap to clone: it wraps a connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// The condition types every catalog is parsed with. The API and the
    /// worker both read through a store, so a plugin registered here is seen
    /// by both — there is no second registry to forget it in.
    registry: std::sync::Arc<segments_conditions::Registry>,
    /// Parsed catalogs by workspace, with the catalog version each was
    /// loaded at (see `Store::catalog`).
    catalogs: std::sync::Arc<std::sync::Mutex<engine::CatalogCache>>,
    /// The connections membership queries run on (see `analytics`).
    analytics: std::sync::Arc<analytics::Analytics>,
}

impl Store {
    /// Connects (creating a SQLite file and its directory when missing).
    /// `registry` holds every condition type this deployment knows.
    pub async fn connect(
        settings: &DatabaseSettings,
        registry: std::sync::Arc<segments_conditions::Registry>,
    ) -> Result<Self, StoreError> {
        let db = db::connect(settings).await?;
        let analytics = analytics::Analytics::new(settings, &db).await?;
        Ok(Self {
            db,
            registry,
            catalogs: std::sync::Arc::default(),
            analytics: std::sync::Arc::new(analytics),
        })
    }

    /// Another store over a pool of its own (for a worker beside the API),
    /// with this store's registry.
    pub async fn connect_another(&self, settings: &DatabaseSettings) -> Result<Self, StoreError> {
        Self::connect(settings, self.registry.clone()).await
    }

    /// How long a membership query may run (see `analytics`).
    pub fn query_timeout(&self) -> std::time::Duration {
        self.analytics.timeout()
    }

    /// The condition types catalogs are parsed with.
    pub fn registry(&self) -> &std::sync::Arc<segments_conditions::Registry> {
        &self.registry
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        use segments_migrations::MigratorTrait;
        segments_migrations::Migrator::up(&self.db, None).await?;
        Ok(())
    }

    /// Answers whether the database responds.
    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.db.ping().await?)
    }

    /// Refreshes the query planner's statistics of the contact tables.
    ///
    /// After a bulk load the planner still believes the tables are as small
    /// as they were, and picks nested loops that turn a segment's build from
    /// milliseconds into seconds. Autovacuum catches up within a minute or so
    /// where it runs, but nothing guarantees it does (it can be off), so bulk
    /// loaders call this when they finish, as PostgreSQL's guide on
    /// populating a database advises.
    pub async fn refresh_statistics(&self) -> Result<(), StoreError> {
        // PostgreSQL also vacuums, which marks the new rows all-visible so
        // index-only scans can skip the heap; SQLite analyzes one table per
        // statement (its VACUUM would rewrite the whole file).
        if self.backend() == DbBackend::Postgres {
            let tables = STATISTICS_TABLES.join(", ");
            self.db
                .execute_unprepared(&format!("VACUUM (ANALYZE) {tables}"))
                .await?;
        } else {
            for table in STATISTICS_TABLES {
                self.db
                    .execute_unprepared(&format!("ANALYZE {table}"))
                    .await?;
            }
        }
        Ok(())
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// The underlying pool, for components (such as job queues) that share it.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Begins a transaction that will write (see `transactions::Purpose`).
    async fn begin_write(&self) -> Result<DatabaseTransaction, StoreError> {
        transactions::begin(&self.db, transactions::Purpose::Write).await
    }

    /// Begins a write over many rows at once (bulk upserts, bulk tagging,
    /// tag deletion). Its lookups take long lists whose best plan depends
    /// on the tables' current size, so on PostgreSQL they are planned per
    /// call: a cached generic plan made while `contacts` was empty kept
    /// scanning it sequentially as an import filled it (BENCHMARKS.md). Its
    /// inserts switch back to cached plans (`bulk_pg::Planning`).
    async fn begin_bulk_write(&self) -> Result<DatabaseTransaction, StoreError> {
        let txn = self.begin_write().await?;
        if self.backend() == DbBackend::Postgres {
            bulk_pg::plan(&txn, bulk_pg::Planning::PerCall).await?;
        }
        Ok(txn)
    }
}

/// Makes PostgreSQL plan every statement of `txn` for its actual parameters
/// and the tables' current size instead of reusing a cached generic plan,
/// and optionally bounds each statement's time. Nothing on SQLite.
async fn plan_per_call(
    txn: &DatabaseTransaction,
    timeout: Option<std::time::Duration>,
) -> Result<(), StoreError> {
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let mut settings = "SET LOCAL plan_cache_mode = force_custom_plan".to_owned();
    if let Some(timeout) = timeout {
        settings.push_str(&format!(
            "; SET LOCAL statement_timeout = {}",
            timeout.as_millis().max(1)
        ));
    }
    txn.execute_unprepared(&settings).await?;
    Ok(())
}
