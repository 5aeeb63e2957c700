//! Preview latency over HTTP on a seeded database.
//!
//! Seed first (see BENCHMARKS.md), then:
//! `BENCH_API_KEY=seg_… cargo bench --workspace --bench preview`
//! (`BENCH_DATABASE_URL` defaults to the local `segments_bench` database;
//! `BENCH_EXPLAIN=1` prints PostgreSQL's plan of each count).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::time::{Duration, Instant};

use sea_orm::sea_query::ExprTrait;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use segments_api::{AppState, HttpSettings};
use segments_conditions::{Limits, Registry};
use segments_domain::Timestamp;
use segments_store::{DatabaseSettings, Store};
use serde_json::{Value, json};

const RUNS: usize = 10;

fn cases() -> Vec<(&'static str, Value)> {
    vec![
        (
            "(a) one tag",
            json!({"type": "tag", "params": {"op": "has_any", "tags": ["tag-03"]}}),
        ),
        (
            "(b) 3-leaf AND",
            json!({"all": [
                {"type": "tag", "params": {"op": "has_any", "tags": ["tag-01"]}},
                {"type": "channel", "params": {"op": "in", "channels": ["whatsapp"]}},
                {"type": "opt_in", "params": {"opted_in": true}}
            ]}),
        ),
        (
            "(c) nested OR of attribute ranges",
            json!({"any": [
                {"all": [
                    {"type": "attribute", "params": {"key": "score", "op": "between", "min": 100, "max": 300}},
                    {"type": "attribute", "params": {"key": "age", "op": "ge", "value": 30}}
                ]},
                {"all": [
                    {"type": "attribute", "params": {"key": "lifetime_value", "op": "gt", "value": 2000}},
                    {"type": "attribute", "params": {"key": "orders", "op": "lt", "value": 10}}
                ]},
                {"type": "attribute", "params": {"key": "nps", "op": "ge", "value": 9}}
            ]}),
        ),
        (
            "(d) relative date",
            json!({"type": "first_contacted", "params": {"op": "within_last_days", "days": 90}}),
        ),
    ]
}

fn main() {
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/segments_bench".into());
    let key =
        std::env::var("BENCH_API_KEY").expect("BENCH_API_KEY: the key `segments seed` printed");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = Store::connect(&DatabaseSettings { url, max_connections: 8, acquire_timeout: Duration::from_secs(30), analytics: Default::default() }, std::sync::Arc::new(Registry::builtin()))
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let server = segments_api::serve(listener, AppState::new(store.clone()), HttpSettings::default()).unwrap();
        tokio::spawn(server);
        let client = reqwest::Client::new();
        let principal = store.authenticate(&key).await.unwrap().expect("a valid key");
        for (name, tree) in cases() {
            let mut times = Vec::with_capacity(RUNS);
            let mut count = Value::Null;
            for run in 0..=RUNS {
                let started = Instant::now();
                let response = client
                    .post(format!("{address}/v1/segments/preview"))
                    .bearer_auth(&key)
                    .json(&json!({"conditions": tree, "limit": 20}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let body: Value = response.json().await.unwrap();
                if run > 0 {
                    times.push(started.elapsed());
                }
                count = body["count"].clone();
            }
            times.sort();
            println!(
                "{name}: count {count}, preview min {:.0} ms, median {:.0} ms, max {:.0} ms ({RUNS} runs)",
                times[0].as_secs_f64() * 1e3,
                times[RUNS / 2].as_secs_f64() * 1e3,
                times[RUNS - 1].as_secs_f64() * 1e3
            );
            if std::env::var_os("BENCH_EXPLAIN").is_some() && store.backend() == DbBackend::Postgres {
                let catalog = store.catalog(principal.workspace_id).await.unwrap();
                let parsed = catalog.parse(&tree, &Registry::builtin(), Limits::default(), None).unwrap();
                let condition = parsed.to_sql(&catalog.sql_context(store.sql_backend(), Timestamp::now())).unwrap();
                let select = sea_orm::sea_query::Query::select()
                    .expr(sea_orm::sea_query::Expr::cust("count(*)"))
                    .from(segments_conditions::sql::Contacts::Table)
                    .and_where(
                        sea_orm::sea_query::Expr::col(segments_conditions::sql::Contacts::WorkspaceId)
                            .eq(principal.workspace_id.0),
                    )
                    .and_where(condition)
                    .to_owned();
                let sql = select.to_string(sea_orm::sea_query::PostgresQueryBuilder);
                let rows = store
                    .connection()
                    .query_all_raw(Statement::from_string(DbBackend::Postgres, format!("EXPLAIN (ANALYZE, BUFFERS) {sql}")))
                    .await
                    .unwrap();
                for row in rows {
                    println!("    {}", row.try_get_by_index::<String>(0).unwrap());
                }
            }
        }
    });
}
