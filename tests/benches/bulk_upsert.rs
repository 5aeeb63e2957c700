//! Bulk-upsert throughput through the real HTTP API.
//!
//! 100,000 contacts with 3 tags and 5 attributes each, sent as 10 requests of
//! 10,000, first as inserts and then again as updates, on SQLite and
//! PostgreSQL. Run: `cargo bench -p segments-tests --bench bulk_upsert`
//! (`BULK_CONTACTS=N` changes the total; `BULK_BACKENDS=sqlite` picks one).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use segments_tests::{Backend, TestApp};
use serde_json::{Value, json};

const BATCH: usize = 10_000;
const PLANS: [&str; 3] = ["free", "pro", "team"];

fn batch(start: usize, len: usize, round: u32) -> Value {
    let channels = ["whatsapp", "sms", "email", "instagram"];
    let contacts: Vec<Value> = (start..start + len)
        .map(|i| {
            json!({
                "external_id": format!("bench-{i}"),
                "name": format!("Contact {i}"),
                "phone": format!("+1555{i:07}"),
                "channel": channels[i % channels.len()],
                "opted_in": i % 10 < 7,
                "first_contacted_at": "2024-05-01T10:00:00Z",
                "tags": [format!("tag-{}", i % 50), format!("tag-{}", (i / 7) % 50), "customer"],
                "attributes": {
                    "plan": PLANS[i % 3],
                    "score": (i % 1000) as f64 + f64::from(round),
                    "vip": i % 13 == 0,
                    "renewal": "2025-01-31",
                    "city": format!("city-{}", i % 200),
                }
            })
        })
        .collect();
    json!({ "contacts": contacts })
}

async fn run(backend: Backend, total: usize) {
    let app = TestApp::spawn(backend).await;
    for (key, ty) in [
        ("plan", "text"),
        ("score", "number"),
        ("vip", "boolean"),
        ("renewal", "date"),
        ("city", "text"),
    ] {
        app.attribute(key, ty).await;
    }
    for round in 0..2u32 {
        let bodies: Vec<Value> = (0..total)
            .step_by(BATCH)
            .map(|s| batch(s, BATCH.min(total - s), round))
            .collect();
        let started = Instant::now();
        let mut stored = 0u64;
        for body in bodies {
            let result = app.post("/v1/contacts/bulk-upsert", body).await.expect(200);
            assert_eq!(result["errors"], json!([]));
            stored += result["created"].as_u64().unwrap() + result["updated"].as_u64().unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        let what = if round == 0 { "insert" } else { "update" };
        println!(
            "{backend:?} {what}: {stored} contacts in {secs:.2} s = {:.0} contacts/s",
            stored as f64 / secs
        );
    }
    app.stop().await;
}

fn main() {
    let total: usize = std::env::var("BULK_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let which = std::env::var("BULK_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for name in which.split(',') {
        let backend = match name.trim() {
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            other => panic!("unknown backend {other}"),
        };
        rt.block_on(run(backend, total));
    }
}
