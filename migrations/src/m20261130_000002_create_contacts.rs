use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::m20261130_000001_create_workspaces::Workspaces;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub(crate) enum Contacts {
    Table,
    Id,
    WorkspaceId,
    ExternalId,
    Name,
    Phone,
    Email,
    Channel,
    OptedIn,
    OptedInAt,
    FirstContactedAt,
    CreatedAt,
    UpdatedAt,
}

/// Every index leads with `workspace_id`: all queries are scoped to one
/// workspace, and the segment engine filters on each of these columns.
fn indexes() -> [(&'static str, Contacts); 5] {
    [
        ("idx_contacts_workspace_id", Contacts::Id),
        ("idx_contacts_workspace_channel", Contacts::Channel),
        ("idx_contacts_workspace_opted_in", Contacts::OptedIn),
        (
            "idx_contacts_workspace_first_contacted",
            Contacts::FirstContactedAt,
        ),
        ("idx_contacts_workspace_name", Contacts::Name),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Contacts::Table)
                    .col(big_pk_auto(Contacts::Id))
                    .col(big_integer(Contacts::WorkspaceId))
                    .col(string_len_null(Contacts::ExternalId, 128))
                    .col(string_len_null(Contacts::Name, 200))
                    .col(string_len_null(Contacts::Phone, 24))
                    .col(string_len_null(Contacts::Email, 254))
                    .col(string_len_null(Contacts::Channel, 32))
                    .col(boolean(Contacts::OptedIn))
                    .col(timestamp_with_time_zone_null(Contacts::OptedInAt))
                    .col(timestamp_with_time_zone_null(Contacts::FirstContactedAt))
                    .col(timestamp_with_time_zone(Contacts::CreatedAt))
                    .col(timestamp_with_time_zone(Contacts::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Contacts::Table, Contacts::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // NULL external ids are distinct on both backends, so contacts without
        // one never collide.
        manager
            .create_index(
                Index::create()
                    .name("uq_contacts_workspace_external_id")
                    .table(Contacts::Table)
                    .col(Contacts::WorkspaceId)
                    .col(Contacts::ExternalId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        for (name, column) in indexes() {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Contacts::Table)
                        .col(Contacts::WorkspaceId)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Contacts::Table).to_owned())
            .await
    }
}
