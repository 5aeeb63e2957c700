//! Full rebuilds of segments selecting ~1%, 10% and 50% of a seeded
//! workspace, beside the floor measured in the same run: the same SELECT
//! streamed by PostgreSQL (`COPY … TO STDOUT`) and the same ids written by a
//! minimal pipelined SADD client (`redis-cli --pipe`), then RENAME.
//!
//! Seed first (BENCHMARKS.md), then:
//! `BENCH_API_KEY=seg_… cargo bench --workspace --bench rebuild`
//! Each segment is rebuilt in a child process of its own so that its peak
//! RSS is its own; the child builds twice and times the second build (a
//! worker is long-lived: the first also opens connections).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/seeded.rs"]
mod seeded;

use std::process::Command;
use std::time::Instant;

use chrono::{Duration as Days, TimeZone, Utc};
use sea_orm::sea_query::{ExprTrait, PostgresQueryBuilder, Query};
use segments_conditions::SegmentSql;
use segments_domain::{SegmentId, Timestamp, WorkspaceId};
use segments_store::SegmentRule;
use segments_worker::{Materializer, MaterializerSettings};
use serde_json::json;

const PREFIX: &str = "bench-rebuild";

/// One rebuild, in this process: prints members, seconds, peak RSS and
/// the set's bytes per member.
async fn child(ws: i64, segment: i64) {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let materializer = Materializer::connect(
        seeded::store().await,
        "redis://127.0.0.1:6379",
        MaterializerSettings {
            prefix: PREFIX.into(),
            ..MaterializerSettings::default()
        },
    )
    .await
    .unwrap();
    // A worker is a long-lived process: the first build also opens pooled
    // connections and loads the Lua scripts. Time the second.
    materializer
        .rebuild(WorkspaceId(ws), SegmentId(segment))
        .await
        .unwrap();
    let started = Instant::now();
    let report = materializer
        .rebuild(WorkspaceId(ws), SegmentId(segment))
        .await
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    // What the set costs Redis per member (exact: every element counted),
    // for the sizing estimate in BENCHMARKS.md.
    let key = materializer
        .keys()
        .members(WorkspaceId(ws), SegmentId(segment));
    let bytes: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(&mut materializer.redis())
        .await
        .unwrap();
    println!(
        "{} {secs:.3} {:.1} {:.1}",
        report.members,
        seeded::peak_rss_mb(),
        bytes as f64 / Ord::max(report.members, 1) as f64
    );
}

fn floor(sql: &str, ws: i64, segment: i64) -> f64 {
    let tmp = format!("{PREFIX}:{{{ws}}}:floor:{segment}");
    let live = format!("{PREFIX}:{{{ws}}}:floor-live:{segment}");
    // Ids in groups of 1,000 per SADD, in the Redis protocol, as redis-cli --pipe wants.
    let script = format!(
        r#"psql -X -q -At "{url}" -c "COPY ({sql}) TO STDOUT" | awk -v key='{tmp}' '
        {{ ids[n++] = $1; if (n == 1000) flush() }}
        END {{ if (n > 0) flush() }}
        function flush(   i) {{
          printf "*%d\r\n$4\r\nSADD\r\n$%d\r\n%s\r\n", n + 2, length(key), key
          for (i = 0; i < n; i++) printf "$%d\r\n%s\r\n", length(ids[i]), ids[i]
          n = 0
        }}' | redis-cli --pipe > /dev/null && redis-cli RENAME '{tmp}' '{live}' > /dev/null"#,
        url = seeded::url()
    );
    let started = Instant::now();
    let status = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .status()
        .unwrap();
    assert!(status.success());
    let secs = started.elapsed().as_secs_f64();
    let _ = Command::new("redis-cli").args(["DEL", &live]).output();
    secs
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if args.get(1).map(String::as_str) == Some("child") {
        let ws = args[2].parse().unwrap();
        let segment = args[3].parse().unwrap();
        rt.block_on(child(ws, segment));
        return;
    }
    let segments = rt.block_on(async {
        let (store, ws) = seeded::workspace().await;
        // First contacts are spread evenly over the 3 years before the seed's anchor.
        let anchor = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let mut out = Vec::new();
        for (label, days) in [("1%", 11), ("10%", 110), ("50%", 548)] {
            let tree = json!({"type": "first_contacted", "params": {"op": "between",
                "from": (anchor - Days::days(days)).to_rfc3339(), "to": anchor.to_rfc3339()}});
            let record = store
                .create_segment(
                    ws,
                    &format!("bench {label}"),
                    &SegmentRule::Dynamic(tree),
                    segments_conditions::Limits::default(),
                )
                .await
                .unwrap();
            let catalog = store.catalog(ws).await.unwrap();
            let ctx = catalog.sql_context(store.sql_backend(), Timestamp::now());
            let condition = catalog.segments.membership_sql(record.id, &ctx).unwrap();
            let sql = Query::select()
                .column(segments_conditions::sql::Contacts::Id)
                .from(segments_conditions::sql::Contacts::Table)
                .and_where(
                    sea_orm::sea_query::Expr::col(segments_conditions::sql::Contacts::WorkspaceId)
                        .eq(ws.0),
                )
                .and_where(condition)
                .to_owned()
                .to_string(PostgresQueryBuilder);
            out.push((label, ws, record.id, sql));
        }
        out
    });
    let me = std::env::current_exe().unwrap();
    for (label, ws, segment, sql) in &segments {
        let out = Command::new(&me)
            .args(["child", &ws.0.to_string(), &segment.0.to_string()])
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let parts: Vec<&str> = line.split_whitespace().collect();
        let floor_secs = floor(sql, ws.0, segment.0);
        let secs: f64 = parts
            .get(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN);
        println!(
            "{label}: {} members, rebuild {secs:.3} s, peak RSS {} MB; floor {floor_secs:.3} s; ratio {:.2}; Redis {} bytes/member",
            parts.first().unwrap_or(&"?"),
            parts.get(2).unwrap_or(&"?"),
            secs / floor_secs,
            parts.get(3).unwrap_or(&"?"),
        );
    }
    rt.block_on(async {
        let store = seeded::store().await;
        for (_, ws, segment, _) in &segments {
            store.delete_segment(*ws, *segment).await.unwrap();
        }
    });
    let _ = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "redis-cli --scan --pattern '{PREFIX}*' | xargs -r redis-cli DEL > /dev/null"
        ))
        .status();
}
