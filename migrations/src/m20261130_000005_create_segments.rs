use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::m20261130_000001_create_workspaces::Workspaces;
use crate::m20261130_000002_create_contacts::Contacts;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Segments {
    Table,
    Id,
    WorkspaceId,
    Name,
    Kind,
    Conditions,
    CreatedAt,
    UpdatedAt,
}

/// Hand-made members of static segments.
#[derive(DeriveIden)]
enum SegmentMembers {
    Table,
    SegmentId,
    ContactId,
    AddedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Segments::Table)
                    .col(big_pk_auto(Segments::Id))
                    .col(big_integer(Segments::WorkspaceId))
                    .col(string_len(Segments::Name, 200))
                    .col(string_len(Segments::Kind, 16))
                    // The condition tree as JSON text: it is read whole and
                    // parsed by the engine, never queried into.
                    .col(text_null(Segments::Conditions))
                    .col(timestamp_with_time_zone(Segments::CreatedAt))
                    .col(timestamp_with_time_zone(Segments::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Segments::Table, Segments::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_segments_workspace_id")
                    .table(Segments::Table)
                    .col(Segments::WorkspaceId)
                    .col(Segments::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SegmentMembers::Table)
                    .col(big_integer(SegmentMembers::SegmentId))
                    .col(big_integer(SegmentMembers::ContactId))
                    .col(timestamp_with_time_zone(SegmentMembers::AddedAt))
                    .primary_key(
                        Index::create()
                            .col(SegmentMembers::SegmentId)
                            .col(SegmentMembers::ContactId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SegmentMembers::Table, SegmentMembers::SegmentId)
                            .to(Segments::Table, Segments::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SegmentMembers::Table, SegmentMembers::ContactId)
                            .to(Contacts::Table, Contacts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The primary key serves "members of a segment"; this serves "static
        // segments of a contact" and deleting a contact.
        manager
            .create_index(
                Index::create()
                    .name("idx_segment_members_contact")
                    .table(SegmentMembers::Table)
                    .col(SegmentMembers::ContactId)
                    .col(SegmentMembers::SegmentId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SegmentMembers::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Segments::Table).to_owned())
            .await
    }
}
