use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::m20261130_000001_create_workspaces::Workspaces;
use crate::m20261130_000002_create_contacts::Contacts;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AttributeDefinitions {
    Table,
    Id,
    WorkspaceId,
    Key,
    Type,
    CreatedAt,
}

/// One row per (contact, attribute), with one typed column per attribute type
/// so that every comparison the segment engine makes is an index range scan
/// over a natively typed column, on both backends.
#[derive(DeriveIden)]
enum ContactAttributes {
    Table,
    ContactId,
    AttributeId,
    ValueText,
    ValueNumber,
    ValueBool,
    ValueDate,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AttributeDefinitions::Table)
                    .col(big_pk_auto(AttributeDefinitions::Id))
                    .col(big_integer(AttributeDefinitions::WorkspaceId))
                    .col(string_len(AttributeDefinitions::Key, 64))
                    .col(string_len(AttributeDefinitions::Type, 16))
                    .col(timestamp_with_time_zone(AttributeDefinitions::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(
                                AttributeDefinitions::Table,
                                AttributeDefinitions::WorkspaceId,
                            )
                            .to(Workspaces::Table, Workspaces::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_attribute_definitions_workspace_key")
                    .table(AttributeDefinitions::Table)
                    .col(AttributeDefinitions::WorkspaceId)
                    .col(AttributeDefinitions::Key)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ContactAttributes::Table)
                    .col(big_integer(ContactAttributes::ContactId))
                    .col(big_integer(ContactAttributes::AttributeId))
                    .col(string_len_null(ContactAttributes::ValueText, 500))
                    .col(double_null(ContactAttributes::ValueNumber))
                    .col(boolean_null(ContactAttributes::ValueBool))
                    .col(timestamp_with_time_zone_null(ContactAttributes::ValueDate))
                    .primary_key(
                        Index::create()
                            .col(ContactAttributes::ContactId)
                            .col(ContactAttributes::AttributeId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ContactAttributes::Table, ContactAttributes::ContactId)
                            .to(Contacts::Table, Contacts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ContactAttributes::Table, ContactAttributes::AttributeId)
                            .to(AttributeDefinitions::Table, AttributeDefinitions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        let indexes = [
            ("idx_contact_attributes_text", ContactAttributes::ValueText),
            (
                "idx_contact_attributes_number",
                ContactAttributes::ValueNumber,
            ),
            ("idx_contact_attributes_bool", ContactAttributes::ValueBool),
            ("idx_contact_attributes_date", ContactAttributes::ValueDate),
        ];
        for (name, column) in indexes {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(ContactAttributes::Table)
                        .col(ContactAttributes::AttributeId)
                        .col(column)
                        .col(ContactAttributes::ContactId)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ContactAttributes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AttributeDefinitions::Table).to_owned())
            .await
    }
}
