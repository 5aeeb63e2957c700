//! Opening the pool, with the per-backend settings that make it behave.

use std::path::Path;
use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use crate::StoreError;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl DatabaseSettings {
    /// Whether the URL names an in-memory SQLite database, which exists
    /// once per pool: a second pool on it would open another, empty one.
    pub fn is_in_memory(&self) -> bool {
        self.url.starts_with("sqlite:") && sqlite_file_path(&self.url).is_none()
    }
}

pub(crate) async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, StoreError> {
    let mut url = settings.url.clone();
    let mut options;
    if url.starts_with("sqlite:") {
        if let Some(path) = sqlite_file_path(&url) {
            if let Some(dir) = Path::new(&path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    sea_orm::DbErr::Custom(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            if !url.contains('?') {
                url.push_str("?mode=rwc");
            }
        }
        options = ConnectOptions::new(url);
        options.map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            // WAL lets readers proceed while one writer writes; NORMAL sync is
            // durable across application crashes, which is what WAL needs.
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30))
        });
    } else {
        options = ConnectOptions::new(url);
        options.map_sqlx_postgres_opts(|o| {
            // JIT compilation cost 200 ms of a 960 ms count over a million
            // contacts and saved nothing: these are short analytical queries.
            // (Membership queries choose their plans per call: see
            // `Store::analytical`.)
            o.options([("jit", "off")])
        });
    }
    options
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        // A connection used within the last second is alive: checking it
        // anyway cost a round trip per checkout — two of the eleven of a
        // tag write. One idle longer (a restarted server, a proxy's
        // timeout) is still checked before use.
        .test_before_acquire_if_idle_for(Duration::from_secs(1))
        .sqlx_logging(false);
    Ok(Database::connect(options).await?)
}

/// The file behind a SQLite URL, or `None` for in-memory databases.
fn sqlite_file_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{DatabaseSettings, sqlite_file_path};

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file_path("sqlite://data/s.db?mode=rwc").as_deref(),
            Some("data/s.db")
        );
        assert_eq!(
            sqlite_file_path("sqlite:///tmp/x.db").as_deref(),
            Some("/tmp/x.db")
        );
        assert_eq!(sqlite_file_path("sqlite::memory:"), None);
    }

    #[test]
    fn only_in_memory_sqlite_is_in_memory() {
        let settings = |url: &str| DatabaseSettings {
            url: url.into(),
            max_connections: 1,
            acquire_timeout: Duration::from_secs(1),
        };
        assert!(settings("sqlite::memory:").is_in_memory());
        assert!(settings("sqlite://:memory:").is_in_memory());
        assert!(!settings("sqlite://data/s.db?mode=rwc").is_in_memory());
        assert!(!settings("postgres://postgres@127.0.0.1/test").is_in_memory());
    }
}
