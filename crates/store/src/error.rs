use sea_orm::DbErr;
use segments_domain::Violations;

/// What a repository call can fail with. The API maps each variant to one
/// HTTP status in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist in this workspace (rows of other workspaces are
    /// reported exactly like missing ones).
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },

    /// The write would break a uniqueness rule or another invariant.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        pointer: Option<String>,
    },

    /// Input that parsed but does not fit this workspace's data (undeclared
    /// attribute, value of the wrong type, limit reached).
    #[error("invalid input: {0}")]
    Invalid(#[from] Violations),

    /// The statement ran past its deadline and the database stopped it.
    #[error("the query ran longer than {} ms and was stopped", .0.as_millis())]
    Timeout(std::time::Duration),

    /// No connection for membership queries came free in time: the
    /// workspace already runs as many as it may (`whole` = false), or all
    /// workspaces together do (`whole` = true).
    #[error("too many membership queries are running{}; try again shortly", if *.whole { "" } else { " for this workspace" })]
    Busy { whole: bool },

    /// The workspace the write was for no longer exists (it was deleted
    /// while one of its keys was still trusted).
    #[error("the workspace of this API key no longer exists")]
    WorkspaceGone,

    #[error("database error: {0}")]
    Database(#[from] DbErr),

    #[error("could not build a statement: {0}")]
    Statement(#[from] sea_orm::sea_query::error::Error),

    /// Rows bound as one JSON document (bulk writes on PostgreSQL) could not
    /// be encoded.
    #[error("could not encode rows for the database: {0}")]
    Encoding(#[from] serde_json::Error),
}

impl StoreError {
    /// Whether the database could not be reached (as opposed to refusing a
    /// statement): worth a 503 and a retry rather than a 500.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database(DbErr::ConnectionAcquire(_) | DbErr::Conn(_))
        )
    }

    /// Whether the database abandoned the statement to resolve a conflict
    /// with a concurrent writer (deadlock, serialization failure, busy
    /// SQLite file): the same write, attempted again, can succeed.
    pub fn is_transient(&self) -> bool {
        let Self::Database(err) = self else {
            return false;
        };
        match sqlstate(err).as_deref() {
            // PostgreSQL: deadlock_detected, serialization_failure.
            Some("40P01" | "40001") => true,
            // SQLite: SQLITE_BUSY and its extended codes (busy_timeout ran out).
            Some(code) => code == "5" || code.parse::<u32>().is_ok_and(|c| c & 0xff == 5),
            None => false,
        }
    }

    pub(crate) fn not_found(entity: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }
}

/// The SQLSTATE (PostgreSQL) or result code (SQLite) of a database error.
pub(crate) fn sqlstate(err: &DbErr) -> Option<String> {
    use sea_orm::RuntimeErr;
    let (DbErr::Exec(RuntimeErr::SqlxError(e))
    | DbErr::Query(RuntimeErr::SqlxError(e))
    | DbErr::Conn(RuntimeErr::SqlxError(e))) = err
    else {
        return None;
    };
    match &**e {
        sea_orm::sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Whether `err` is a unique-constraint violation, on either backend.
pub(crate) fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}
