//! Bulk-upsert throughput through the real HTTP API.
//!
//! 100,000 contacts with 3 tags and 5 attributes each, sent as 10 requests of
//! 10,000, first as inserts and then again as updates, on SQLite and
//! PostgreSQL. Run: `cargo bench -p segments-tests --bench bulk_upsert`
//! (`BULK_CONTACTS=N` changes the total; `BULK_BACKENDS=sqlite` picks one).
//!
//! Then bulk tagging: two tags applied to every contact and removed again,
//! 10,000 contacts a request (`POST /v1/tags/apply`, `/v1/tags/remove`);
//! on PostgreSQL beside the floor measured in the same run — the same
//! batches done by `psql` alone in one transaction each: the rows locked in
//! id order, the links inserted (or deleted), the contacts touched and the
//! change log written, as set-based statements (`floor_script`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
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
    let mut ids = Vec::with_capacity(total);
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
            if round == 0 {
                ids.extend(
                    result["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|i| i["id"].as_i64().unwrap()),
                );
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let what = if round == 0 { "insert" } else { "update" };
        println!(
            "{backend:?} {what}: {stored} contacts in {secs:.2} s = {:.0} contacts/s",
            stored as f64 / secs
        );
    }
    tagging(&app, backend, &ids).await;
    app.stop().await;
}

/// Two tags on every contact of `ids` and off again, through the API;
/// on PostgreSQL, then the floor.
async fn tagging(app: &TestApp, backend: Backend, ids: &[i64]) {
    for (path, what) in [("/v1/tags/apply", "apply"), ("/v1/tags/remove", "remove")] {
        let started = Instant::now();
        for chunk in ids.chunks(BATCH) {
            let result = app
                .post(
                    path,
                    json!({"contact_ids": chunk, "tags": ["bulk-a", "bulk-b"]}),
                )
                .await
                .expect(200);
            assert_eq!(result["updated"].as_u64(), Some(chunk.len() as u64));
        }
        let secs = started.elapsed().as_secs_f64();
        let ws = app.workspace_id().await.0;
        let floor = (backend == Backend::Postgres)
            .then(|| floor_seconds(app.database_url(), ws, ids, what));
        println!(
            "{backend:?} tags {what}: {} contacts in {secs:.2} s = {:.0} contacts/s{}",
            ids.len(),
            ids.len() as f64 / secs,
            floor.map_or_else(String::new, |f| format!(
                "; floor {f:.2} s, ratio {:.2}",
                secs / f
            ))
        );
    }
}

/// What PostgreSQL alone does with the same batches, one transaction each.
fn floor_script(ws: i64, ids: &[i64], what: &str) -> String {
    let mut script = String::from("\\set ON_ERROR_STOP 1\n");
    script.push_str(&format!(
        "INSERT INTO tags (workspace_id, name, name_key, created_at) \
         SELECT {ws}, n, n, now() FROM unnest(ARRAY['floor-a', 'floor-b']) AS n \
         ON CONFLICT (workspace_id, name_key) DO NOTHING;\n"
    ));
    for chunk in ids.chunks(BATCH) {
        let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
        let ids = format!("ARRAY[{}]::bigint[]", list.join(","));
        let links = if what == "apply" {
            format!(
                "INSERT INTO contact_tags (contact_id, tag_id) \
                 SELECT c, t.id FROM unnest({ids}) AS c, tags t \
                 WHERE t.workspace_id = {ws} AND t.name_key IN ('floor-a', 'floor-b') \
                 ON CONFLICT DO NOTHING;"
            )
        } else {
            format!(
                "DELETE FROM contact_tags WHERE contact_id = ANY({ids}) AND tag_id IN \
                 (SELECT id FROM tags WHERE workspace_id = {ws} AND name_key IN ('floor-a', 'floor-b'));"
            )
        };
        script.push_str(&format!(
            "BEGIN;\n\
             SELECT count(*) FROM (SELECT id FROM contacts WHERE workspace_id = {ws} AND id = ANY({ids}) \
             ORDER BY id FOR UPDATE) AS locked;\n\
             {links}\n\
             UPDATE contacts SET updated_at = now() WHERE id = ANY({ids});\n\
             INSERT INTO contact_changes (workspace_id, contact_id, changed, created_at) \
             SELECT {ws}, c, 'tag:floor-a,tag:floor-b', now() FROM unnest({ids}) AS c;\n\
             COMMIT;\n"
        ));
    }
    script
}

fn floor_seconds(url: &str, ws: i64, ids: &[i64], what: &str) -> f64 {
    let path = std::env::temp_dir().join(format!("bulk-tag-floor-{}.sql", std::process::id()));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(floor_script(ws, ids, what).as_bytes())
        .unwrap();
    let started = Instant::now();
    let status = std::process::Command::new("psql")
        .arg(url)
        .args(["-q", "-X", "-o", "/dev/null", "-f"])
        .arg(&path)
        .status()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    assert!(status.success(), "the floor script failed");
    secs
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
