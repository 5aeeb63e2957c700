use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    CatalogVersion,
}

/// A counter on each workspace that every write to its catalog (segments,
/// attribute definitions) increments in the same transaction. Cached parsed
/// catalogs are checked against it before each job and catalog read: one
/// primary-key lookup, where comparing aggregates read every segment row.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Workspaces::Table)
                    .add_column(big_integer(Workspaces::CatalogVersion).default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Workspaces::Table)
                    .drop_column(Workspaces::CatalogVersion)
                    .to_owned(),
            )
            .await
    }
}
