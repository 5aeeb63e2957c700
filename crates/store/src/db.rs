//! Opening the pool, with the per-backend settings that make it behave.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use crate::StoreError;
use crate::analytics::Deadline;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// The connections and bounds of membership queries.
    pub analytics: crate::AnalyticsSettings,
}

impl DatabaseSettings {
    /// Whether the URL names an in-memory SQLite database, which exists
    /// once per pool: a second pool on it would open another, empty one.
    pub fn is_in_memory(&self) -> bool {
        self.url.starts_with("sqlite:") && sqlite_file_path(&self.url).is_none()
    }
}

pub(crate) async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, StoreError> {
    open(settings, settings.max_connections, None).await
}

/// A pool of one connection for membership queries, opened when first
/// used. On SQLite its statements stop once `deadline` has passed.
pub(crate) async fn connect_slot(
    settings: &DatabaseSettings,
    deadline: Arc<Deadline>,
) -> Result<DatabaseConnection, StoreError> {
    open(settings, 1, Some(deadline)).await
}

async fn open(
    settings: &DatabaseSettings,
    max_connections: u32,
    deadline: Option<Arc<Deadline>>,
) -> Result<DatabaseConnection, StoreError> {
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
        if let Some(deadline) = deadline.clone() {
            options.map_sqlx_sqlite_pool_opts(move |o| {
                let deadline = deadline.clone();
                o.after_connect(move |conn, _| {
                    let deadline = deadline.clone();
                    Box::pin(async move {
                        // Checked every few thousand virtual-machine steps
                        // (microseconds): interrupting answers SQLITE_INTERRUPT.
                        conn.lock_handle()
                            .await?
                            .set_progress_handler(4_000, move || !deadline.passed());
                        Ok(())
                    })
                })
            });
        }
    } else {
        // sea-orm's connect span (TRACE) prints the URL it is given: the
        // password travels beside it instead, never in it.
        let (url, password) = split_password(&url);
        options = ConnectOptions::new(url);
        options.map_sqlx_postgres_opts(move |o| {
            // JIT compilation cost 200 ms of a 960 ms count over a million
            // contacts and saved nothing: these are short analytical queries.
            // (Membership queries choose their plans per call: see
            // `Store::count_where`.)
            let o = o.options([("jit", "off")]);
            match &password {
                Some(password) => o.password(password),
                None => o,
            }
        });
    }
    options
        .max_connections(max_connections)
        .connect_lazy(deadline.is_some())
        .acquire_timeout(settings.acquire_timeout)
        // A connection used within the last second is alive: checking it
        // anyway cost a round trip per checkout — two of the eleven of a
        // tag write. One idle longer (a restarted server, a proxy's
        // timeout) is still checked before use.
        .test_before_acquire_if_idle_for(Duration::from_secs(1))
        .sqlx_logging(false);
    Ok(Database::connect(options).await?)
}

/// A PostgreSQL URL without its password, and the password (decoded).
fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_owned(), None);
    };
    let Some((user, password)) = userinfo.split_once(':') else {
        return (url.to_owned(), None);
    };
    (
        format!("{scheme}://{user}@{host}{tail}"),
        Some(percent_decode(password)),
    )
}

/// Decodes `%XX` escapes (URLs carry reserved characters of a password so).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let value = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

    use super::{DatabaseSettings, split_password, sqlite_file_path};

    #[test]
    fn passwords_are_taken_out_of_urls() {
        assert_eq!(
            split_password("postgres://app:s%40cret:x@db.internal:5432/segments?sslmode=require"),
            (
                "postgres://app@db.internal:5432/segments?sslmode=require".to_owned(),
                Some("s@cret:x".to_owned())
            )
        );
        assert_eq!(
            split_password("postgres://app@db/segments"),
            ("postgres://app@db/segments".to_owned(), None)
        );
        assert_eq!(
            split_password("postgres://db/segments?user=a"),
            ("postgres://db/segments?user=a".to_owned(), None)
        );
    }

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
            analytics: crate::AnalyticsSettings::default(),
        };
        assert!(settings("sqlite::memory:").is_in_memory());
        assert!(settings("sqlite://:memory:").is_in_memory());
        assert!(!settings("sqlite://data/s.db?mode=rwc").is_in_memory());
        assert!(!settings("postgres://postgres@127.0.0.1/test").is_in_memory());
    }
}
