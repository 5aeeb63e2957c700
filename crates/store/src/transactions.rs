//! Beginning transactions, in one place, so that a caller who stops waiting
//! can never leave a transaction open on a pooled connection.
//!
//! sqlx 0.9 counts a PostgreSQL transaction as begun only once the server
//! has answered its `BEGIN`. A future dropped while it waits for that answer
//! queues no `ROLLBACK`: the connection goes back to the pool inside an open
//! transaction, and the next requests to borrow it — of any workspace — run
//! their statements in it, uncommitted, until one fails and every later one
//! answers "current transaction is aborted". Futures are dropped whenever a
//! client disconnects mid-request. So `BEGIN` runs on a task of its own: if
//! the caller is gone when the server answers, the task drops the new
//! transaction, and sea-orm queues its `ROLLBACK` before the connection is
//! returned (sqlx flushes it on return). From `BEGIN`'s answer on, a dropped
//! transaction rolls back by itself.

use sea_orm::{
    AccessMode, DatabaseConnection, DatabaseTransaction, DbBackend, IsolationLevel,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

use crate::StoreError;

/// What a transaction is for, which decides how it begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Reads, or writes that take no lock before their first write.
    Plain,
    /// Writes. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads first and writes later
    /// fails with SQLITE_BUSY, bypassing the busy timeout, whenever another
    /// writer got in between.
    Write,
    /// A read that must see one snapshot throughout (REPEATABLE READ, read
    /// only, on PostgreSQL; every SQLite read transaction is one snapshot).
    Snapshot,
}

pub(crate) async fn begin(
    db: &DatabaseConnection,
    purpose: Purpose,
) -> Result<DatabaseTransaction, StoreError> {
    let sqlite = db.get_database_backend() == DbBackend::Sqlite;
    let options = match purpose {
        Purpose::Plain => TransactionOptions::default(),
        Purpose::Write if sqlite => TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        },
        Purpose::Write => TransactionOptions::default(),
        Purpose::Snapshot if sqlite => TransactionOptions::default(),
        Purpose::Snapshot => TransactionOptions {
            isolation_level: Some(IsolationLevel::RepeatableRead),
            access_mode: Some(AccessMode::ReadOnly),
            ..TransactionOptions::default()
        },
    };
    let db = db.clone();
    tokio::spawn(async move { db.begin_with_options(options).await })
        .await
        .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(format!("BEGIN failed: {e}"))))?
        .map_err(StoreError::from)
}
