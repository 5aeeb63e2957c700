use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ContactChanges {
    Table,
    Xid,
}

/// The id of the transaction that wrote each change (PostgreSQL only).
///
/// Sequence numbers are handed out when a row is inserted, not when its
/// transaction commits: a build that records "every change up to seq N"
/// misses a transaction that took a lower number and commits after the
/// build read the database. A build therefore records its snapshot
/// (`pg_current_snapshot()`), and a change belongs to the build exactly when
/// its transaction is visible in that snapshot — which needs the writer's
/// transaction id on the change. The column defaults to it, so every insert
/// (the store's, the retag function's, `INSERT … SELECT`) fills it without
/// naming it. SQLite serializes writers, so there the sequence number is in
/// commit order and the column stays empty.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let column = if manager.get_database_backend() == DbBackend::Postgres {
            big_integer(ContactChanges::Xid)
                .default(Expr::cust("(pg_current_xact_id()::text::bigint)"))
                .to_owned()
        } else {
            big_integer_null(ContactChanges::Xid)
        };
        manager
            .alter_table(
                Table::alter()
                    .table(ContactChanges::Table)
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        // Replays and sweeps read the changes a snapshot did not see: those
        // of transactions at or above its xmin.
        manager
            .create_index(
                Index::create()
                    .name("idx_contact_changes_xid")
                    .table(ContactChanges::Table)
                    .col(ContactChanges::Xid)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ContactChanges::Table)
                    .drop_column(ContactChanges::Xid)
                    .to_owned(),
            )
            .await
    }
}
