//! The reconciler on a seeded workspace (BENCHMARKS.md: a million contacts)
//! with many segments: a whole drift check (every set against SQL) with its
//! duration, peak RSS and the longest Redis commands it caused, then the
//! scheduled tick when nothing changed but time (one segment of the 1,001
//! moves with time).
//!
//! Seed first, then:
//! `BENCH_API_KEY=seg_… cargo bench --workspace --bench reconcile`
//! (`RECONCILE_SEGMENTS`, default 1,000: tag × channel × opt-in segments of
//! a few to ~80,000 members each).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/seeded.rs"]
mod seeded;

use std::time::{Duration, Instant};

use segments_domain::WorkspaceId;
use segments_store::{SegmentRule, Store};
use segments_worker::{Materializer, MaterializerSettings};
use serde_json::json;

const PREFIX: &str = "bench-reconcile";
const REDIS: &str = "redis://127.0.0.1:6379";
const CHANNELS: [&str; 7] = [
    "whatsapp",
    "instagram",
    "messenger",
    "sms",
    "email",
    "telegram",
    "webchat",
];

/// Resets the peak RSS to the current RSS (Linux: `clear_refs` 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn tree(i: usize) -> serde_json::Value {
    json!({"all": [
        {"type": "tag", "params": {"op": "has_any", "tags": [format!("tag-{:02}", i % 50)]}},
        {"type": "channel", "params": {"op": "in", "channels": [CHANNELS[(i / 50) % 7]]}},
        {"type": "opt_in", "params": {"opted_in": (i / 350).is_multiple_of(2)}}
    ]})
}

async fn segments(store: &Store, ws: WorkspaceId, n: usize) -> usize {
    let existing: std::collections::HashSet<String> = store
        .segment_records(ws)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    let mut created = 0;
    // One segment that time moves: each tick re-decides only the contacts
    // at the edges of its window.
    if !existing.contains("reconcile time") {
        let tree =
            json!({"type": "first_contacted", "params": {"op": "within_last_days", "days": 30}});
        store
            .create_segment(
                ws,
                "reconcile time",
                &SegmentRule::Dynamic(tree),
                segments_conditions::Limits::default(),
            )
            .await
            .unwrap();
        created += 1;
    }
    for i in 0..n {
        let name = format!("reconcile {i}");
        if existing.contains(&name) {
            continue;
        }
        store
            .create_segment(
                ws,
                &name,
                &SegmentRule::Dynamic(tree(i)),
                segments_conditions::Limits::default(),
            )
            .await
            .unwrap();
        created += 1;
    }
    created
}

/// Commands slower than `micros` logged by Redis since the last reset, and
/// the longest of them.
async fn slow_commands(conn: &mut segments_worker::SetsConnection) -> (usize, u64, String) {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(10_000)
        .query_async(conn)
        .await
        .unwrap();
    let mut longest = (0u64, String::new());
    for entry in &entries {
        if let redis::Value::Array(fields) = entry {
            let micros = match fields.get(2) {
                Some(redis::Value::Int(m)) => u64::try_from(*m).unwrap_or(0),
                _ => 0,
            };
            let command = match fields.get(3) {
                Some(redis::Value::Array(args)) => args
                    .iter()
                    .take(2)
                    .map(|a| match a {
                        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                        other => format!("{other:?}"),
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => String::new(),
            };
            if micros > longest.0 {
                longest = (micros, command);
            }
        }
    }
    (entries.len(), longest.0, longest.1)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let n: usize = std::env::var("RECONCILE_SEGMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let (store, ws) = seeded::workspace().await;
    let created = segments(&store, ws, n).await;
    let materializer = Materializer::connect(
        store.clone(),
        REDIS,
        MaterializerSettings {
            prefix: PREFIX.into(),
            ..MaterializerSettings::default()
        },
    )
    .await
    .unwrap();
    let mut conn = materializer.redis();

    // The first reconciliation builds every set (never built) and runs a
    // first drift check.
    let started = Instant::now();
    let first = materializer.reconcile().await.unwrap();
    println!(
        "{n} segments ({created} created); first reconciliation (builds {} sets): {:.1} s",
        first.built,
        started.elapsed().as_secs_f64()
    );
    let mut members = 0u64;
    for record in store.segment_records(ws).await.unwrap() {
        if let Some(status) = materializer.status(ws, record.id).await.unwrap() {
            members += status.count;
        }
    }
    println!("{members} members in all sets");

    // A whole drift check, with Redis logging every command over 1 ms.
    let slowlog: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("slowlog-log-slower-than")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(1_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut conn)
        .await
        .unwrap();
    reset_peak_rss();
    let started = Instant::now();
    let report = materializer.reconcile().await.unwrap();
    let drift_secs = started.elapsed().as_secs_f64();
    let peak = seeded::peak_rss_mb();
    let (slow, longest, command) = slow_commands(&mut conn).await;
    if let Some(previous) = slowlog.get(1) {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(previous)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    println!(
        "drift check: {} segments, {members} members, {drift_secs:.1} s, repaired {}; peak RSS {peak:.0} MB; Redis commands over 1 ms: {slow} (longest {longest} µs: {command})",
        report.drift_checked, report.repaired_members
    );

    // Ticks with nothing changed: sweep, built check, strays; the next
    // drift check is not due for an hour.
    let mut ticks = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let report = materializer
            .reconcile_exclusively(Duration::from_secs(60))
            .await
            .unwrap()
            .expect("no other reconciler");
        assert_eq!(report.drift_checked, 0);
        assert_eq!((report.time_updates, report.time_rebuilds), (1, 0));
        ticks.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ticks.sort_by(f64::total_cmp);
    println!(
        "tick with nothing changed: median {:.0} ms, max {:.0} ms (5 ticks)",
        ticks[2], ticks[4]
    );

    // Leave the shared Redis as it was.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{PREFIX}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    for chunk in keys.chunks(500) {
        let _: i64 = redis::cmd("UNLINK")
            .arg(chunk)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}
