//! What the benchmarks over the seeded database share (included with
//! `#[path]`: each benchmark is a crate of its own): where the database is,
//! a store over it, the seeded workspace, and the process's peak RSS.

use std::sync::Arc;
use std::time::Duration;

use segments_conditions::Registry;
use segments_store::{DatabaseSettings, Store};

/// The seeded database (`BENCH_DATABASE_URL`, BENCHMARKS.md).
pub fn url() -> String {
    std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/segments_bench".into())
}

/// A store over the seeded database, with the built-in condition types.
pub async fn store() -> Store {
    Store::connect(
        &DatabaseSettings {
            url: url(),
            max_connections: 4,
            acquire_timeout: Duration::from_secs(30),
            analytics: Default::default(),
        },
        Arc::new(Registry::builtin()),
    )
    .await
    .unwrap()
}

/// The store, migrated, and the workspace whose key `segments seed`
/// printed (`BENCH_API_KEY`).
pub async fn workspace() -> (Store, segments_domain::WorkspaceId) {
    let key =
        std::env::var("BENCH_API_KEY").expect("BENCH_API_KEY: the key `segments seed` printed");
    let store = store().await;
    store.migrate().await.unwrap();
    let ws = store
        .authenticate(&key)
        .await
        .unwrap()
        .expect("a valid key")
        .workspace_id;
    (store, ws)
}

/// The process's peak resident set (`VmHWM`), in MB.
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
