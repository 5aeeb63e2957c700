use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The change log: one row per contact write, in the write's own transaction.
/// The materializer is told of changes through its job queue; this log is
/// what makes a change that could not be enqueued (Redis down, a crash
/// between commit and enqueue) reach Redis anyway, through the reconciler.
/// `seq` also versions contacts, so stale evaluations never win.
#[derive(DeriveIden)]
enum ContactChanges {
    Table,
    Seq,
    WorkspaceId,
    ContactId,
    Changed,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ContactChanges::Table)
                    .col(big_pk_auto(ContactChanges::Seq))
                    // No foreign keys: a deleted contact's last change must outlive it.
                    .col(big_integer(ContactChanges::WorkspaceId))
                    .col(big_integer(ContactChanges::ContactId))
                    // What the write touched, e.g. `tags attribute:plan`, or `*`.
                    .col(string_len(ContactChanges::Changed, 1000))
                    .col(timestamp_with_time_zone(ContactChanges::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_contact_changes_contact_seq")
                    .table(ContactChanges::Table)
                    .col(ContactChanges::ContactId)
                    .col(ContactChanges::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_contact_changes_created")
                    .table(ContactChanges::Table)
                    .col(ContactChanges::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ContactChanges::Table).to_owned())
            .await
    }
}
