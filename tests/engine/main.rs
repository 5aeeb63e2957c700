//! The differential test the segment engine rests on: for thousands of random
//! condition trees over random contacts, the SQL evaluation on SQLite, the SQL
//! evaluation on PostgreSQL and the in-memory evaluation select exactly the
//! same contacts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod catalog;
mod world;

use std::collections::BTreeSet;

use proptest::prelude::*;
use segments_conditions::{EvalContext, Limits, Registry, Tree};
use segments_domain::{Label, Timestamp};
use segments_store::Store;
use segments_tests::{Backend, TestDatabase};
use serde_json::Value;

use world::{World, tree_strategy, world_strategy};

struct Fixture {
    runtime: tokio::runtime::Runtime,
    databases: Vec<(Backend, Store, TestDatabase)>,
    registry: std::sync::Arc<Registry>,
}

impl Fixture {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut builder = segments_conditions::RegistryBuilder::new();
        segments_conditions::builtin::register_all(&mut builder);
        // The example third-party plugin takes part like a built-in.
        builder
            .register(segments_plugin_email_domain::EmailDomainCondition)
            .unwrap();
        let registry = std::sync::Arc::new(builder.build());
        let databases = runtime.block_on(async {
            let mut out = Vec::new();
            for backend in [Backend::Sqlite, Backend::Postgres] {
                let db = TestDatabase::create(backend).await;
                let store = Store::connect(&db.settings(), registry.clone())
                    .await
                    .unwrap();
                store.migrate().await.unwrap();
                out.push((backend, store, db));
            }
            out
        });
        Self {
            runtime,
            databases,
            registry,
        }
    }
}

/// What one database (and memory, over that database's snapshots) selects
/// for each tree, as sets of external ids.
async fn evaluate(
    store: &Store,
    registry: &Registry,
    world: &World,
    trees: &[Value],
    now: Timestamp,
) -> Vec<(BTreeSet<String>, BTreeSet<String>)> {
    let (_, key) = store
        .create_workspace(&Label::parse("differential").unwrap())
        .await
        .unwrap();
    let principal = store.authenticate(&key.secret).await.unwrap().unwrap();
    let ws = principal.workspace_id;
    let installed = world.install(store, ws, registry).await;
    let catalog = store.catalog(ws).await.unwrap();
    assert!(catalog.broken.is_empty(), "{:?}", catalog.broken);
    let ids: Vec<_> = installed.external_ids.keys().copied().collect();
    let snapshots = store.snapshots(ws, &ids).await.unwrap();
    assert_eq!(snapshots.len(), world.contacts.len());
    let mut out = Vec::with_capacity(trees.len());
    for tree in trees {
        let json = installed.resolve_segments(tree);
        let parsed = catalog
            .parse(
                &json,
                registry,
                Limits {
                    max_depth: 8,
                    max_leaves: 200,
                    ..Limits::default()
                },
                None,
            )
            .unwrap_or_else(|v| panic!("generated tree must be valid: {v}\n{json}"));
        let sql = parsed
            .to_sql(&catalog.sql_context(store.sql_backend(), now))
            .unwrap();
        let by_sql: BTreeSet<String> = store
            .ids_where(ws, sql)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{json}"))
            .into_iter()
            .map(|id| installed.external_ids[&id].clone())
            .collect();
        let ctx = EvalContext {
            now,
            segments: &catalog.segments,
            depth: 0,
        };
        let by_memory: BTreeSet<String> = snapshots
            .iter()
            .filter(|s| Tree::matches(&parsed, s, &ctx))
            .map(|s| installed.external_ids[&s.contact.id].clone())
            .collect();
        out.push((by_sql, by_memory));
    }
    out
}

/// One fixture for every case (its databases are dropped when the test
/// ends), driven by proptest's runner rather than the `proptest!` macro so
/// that it owns the fixture.
#[test]
fn sqlite_postgres_and_memory_select_the_same_contacts() {
    let f = Fixture::new();
    let config = ProptestConfig {
        cases: std::env::var("DIFFERENTIAL_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(48),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    };
    let strategy = (
        world_strategy(),
        proptest::collection::vec(tree_strategy(), 60),
    );
    let result = proptest::test_runner::TestRunner::new(config).run(&strategy, |(world, trees)| {
        let now = world::now();
        let results: Vec<_> = f.runtime.block_on(async {
            let mut results = Vec::new();
            for (backend, store, _) in &f.databases {
                results.push((
                    *backend,
                    evaluate(store, &f.registry, &world, &trees, now).await,
                ));
            }
            results
        });
        let (_, sqlite) = &results[0];
        let (_, postgres) = &results[1];
        for (i, tree) in trees.iter().enumerate() {
            let (sqlite_sql, sqlite_memory) = &sqlite[i];
            let (postgres_sql, postgres_memory) = &postgres[i];
            prop_assert_eq!(
                sqlite_sql,
                sqlite_memory,
                "SQLite SQL vs memory for {}",
                tree
            );
            prop_assert_eq!(
                postgres_sql,
                postgres_memory,
                "PostgreSQL SQL vs memory for {}",
                tree
            );
            prop_assert_eq!(
                sqlite_sql,
                postgres_sql,
                "SQLite vs PostgreSQL for {}",
                tree
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
