//! Per-test databases.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use sea_orm::{ConnectionTrait, Database};
use segments_store::DatabaseSettings;

/// Where the PostgreSQL server for tests is; override with
/// `SEGMENTS_TEST_POSTGRES_URL` (any database the user may connect to).
fn admin_url() -> String {
    std::env::var("SEGMENTS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

const PREFIX: &str = "segments_test_";

/// Databases this old are leftovers of killed runs and are dropped.
const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test and is removed when dropped.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    File(PathBuf),
    Postgres(String),
}

fn unique_suffix() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let random: u64 = rand::rng().random();
    format!("{secs}_{}_{random:016x}", std::process::id())
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{PREFIX}{}.db", unique_suffix()));
                Self {
                    url: format!("sqlite://{}", path.display()),
                    cleanup: Cleanup::File(path),
                }
            }
            Backend::Postgres => {
                let name = format!("{PREFIX}{}", unique_suffix());
                let admin = Database::connect(admin_url()).await.expect(
                    "PostgreSQL is not reachable: start it (scripts/test.sh does) or set SEGMENTS_TEST_POSTGRES_URL",
                );
                drop_stale(&admin).await;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create database");
                let _ = admin.close().await;
                // The same server and options (`?sslmode=…`), another database.
                let admin = admin_url();
                let (base, options) = admin.split_once('?').unwrap_or((&admin, ""));
                let mut url = base.to_owned();
                if let Some(slash) = url.rfind('/') {
                    url.truncate(slash + 1);
                }
                url.push_str(&name);
                if !options.is_empty() {
                    url.push('?');
                    url.push_str(options);
                }
                Self {
                    url,
                    cleanup: Cleanup::Postgres(name),
                }
            }
        }
    }

    pub fn settings(&self) -> DatabaseSettings {
        DatabaseSettings {
            url: self.url.clone(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
            analytics: segments_store::AnalyticsSettings::default(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

async fn drop_stale(admin: &sea_orm::DatabaseConnection) {
    let Ok(rows) = admin
        .query_all_raw(sea_orm::Statement::from_string(
            admin.get_database_backend(),
            format!("SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%'"),
        ))
        .await
    else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for row in rows {
        let Ok(name) = row.try_get::<String>("", "datname") else {
            continue;
        };
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|c| now.saturating_sub(c) > STALE_AFTER.as_secs()) {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Cleanup::Postgres(name) => {
                // Drop runs outside any async context we may block on, so the
                // database is dropped from a thread with its own runtime.
                let name = name.clone();
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async move {
                        if let Ok(admin) = Database::connect(admin_url()).await {
                            let _ = admin
                                .execute_unprepared(&format!(
                                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                                ))
                                .await;
                            let _ = admin.close().await;
                        }
                    });
                })
                .join();
            }
        }
    }
}
