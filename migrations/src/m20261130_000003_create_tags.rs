use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::m20261130_000001_create_workspaces::Workspaces;
use crate::m20261130_000002_create_contacts::Contacts;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tags {
    Table,
    Id,
    WorkspaceId,
    Name,
    NameKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ContactTags {
    Table,
    ContactId,
    TagId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tags::Table)
                    .col(big_pk_auto(Tags::Id))
                    .col(big_integer(Tags::WorkspaceId))
                    .col(string_len(Tags::Name, 64))
                    // The case-folded name, computed by the application: a plain
                    // column indexes identically on SQLite and PostgreSQL, where an
                    // index on lower(name) would fold differently on each.
                    .col(string_len(Tags::NameKey, 64))
                    .col(timestamp_with_time_zone(Tags::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Tags::Table, Tags::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_tags_workspace_name_key")
                    .table(Tags::Table)
                    .col(Tags::WorkspaceId)
                    .col(Tags::NameKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ContactTags::Table)
                    .col(big_integer(ContactTags::ContactId))
                    .col(big_integer(ContactTags::TagId))
                    .primary_key(
                        Index::create()
                            .col(ContactTags::ContactId)
                            .col(ContactTags::TagId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ContactTags::Table, ContactTags::ContactId)
                            .to(Contacts::Table, Contacts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ContactTags::Table, ContactTags::TagId)
                            .to(Tags::Table, Tags::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The primary key serves "tags of a contact"; this serves "contacts
        // with a tag", the segment engine's most common probe.
        manager
            .create_index(
                Index::create()
                    .name("idx_contact_tags_tag_contact")
                    .table(ContactTags::Table)
                    .col(ContactTags::TagId)
                    .col(ContactTags::ContactId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ContactTags::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Tags::Table).to_owned())
            .await
    }
}
