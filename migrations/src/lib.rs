//! Schema migrations for Segments, identical in effect on SQLite and PostgreSQL
//! (tables, columns, indexes); the exceptions are a PostgreSQL function
//! that serves a fast path of the store (`000007`) and the default of
//! `contact_changes.xid`, the writer's transaction id, which only PostgreSQL
//! has (`000009`).
//!
//! Migrations name their own tables and columns instead of importing the
//! store's entities: a migration is history and must not change when today's
//! model does. One migration per file (its name comes from the file name).

pub use sea_orm_migration::prelude::*;

mod m20261130_000001_create_workspaces;
mod m20261130_000002_create_contacts;
mod m20261130_000003_create_tags;
mod m20261130_000004_create_attributes;
mod m20261130_000005_create_segments;
mod m20261130_000006_create_contact_changes;
mod m20261130_000007_create_retag_function;
mod m20261130_000008_add_catalog_version;
mod m20261201_000009_add_change_xid;

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261130_000001_create_workspaces::Migration),
            Box::new(m20261130_000002_create_contacts::Migration),
            Box::new(m20261130_000003_create_tags::Migration),
            Box::new(m20261130_000004_create_attributes::Migration),
            Box::new(m20261130_000005_create_segments::Migration),
            Box::new(m20261130_000006_create_contact_changes::Migration),
            Box::new(m20261130_000007_create_retag_function::Migration),
            Box::new(m20261130_000008_add_catalog_version::Migration),
            Box::new(m20261201_000009_add_change_xid::Migration),
        ]
    }
}
