use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub(crate) enum Workspaces {
    Table,
    Id,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    WorkspaceId,
    Name,
    Prefix,
    SecretHash,
    CreatedAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Workspaces::Table)
                    .col(big_pk_auto(Workspaces::Id))
                    .col(string_len(Workspaces::Name, 100))
                    .col(timestamp_with_time_zone(Workspaces::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(big_pk_auto(ApiKeys::Id))
                    .col(big_integer(ApiKeys::WorkspaceId))
                    .col(string_len(ApiKeys::Name, 100))
                    .col(string_len(ApiKeys::Prefix, 16))
                    // SHA-256 of the whole key, hex: keys are 256-bit random, so a
                    // fast hash suffices and lets authentication be one indexed lookup.
                    .col(string_len_uniq(ApiKeys::SecretHash, 64))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiKeys::Table, ApiKeys::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_api_keys_workspace")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::WorkspaceId)
                    .col(ApiKeys::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ApiKeys::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Workspaces::Table).to_owned())
            .await
    }
}
