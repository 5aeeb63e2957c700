//! Incremental latency: with 1,000 dynamic segments defined and contact
//! writes through the API at a fixed rate, the time from the request's
//! start to the Redis set showing the change, and the request's own time
//! (a write applies its change before it answers, so the first includes
//! the second).
//!
//! `cargo bench --workspace --bench incremental` (PostgreSQL on 127.0.0.1,
//! Redis on 127.0.0.1:6379; `INCREMENTAL_SECONDS`, `INCREMENTAL_RATE`, `INCREMENTAL_CONTACTS` and
//! `INCREMENTAL_BACKEND=sqlite` adjust it; `INCREMENTAL_QUEUED=1` has writes
//! only queue their changes, as before read-your-writes; `INCREMENTAL_NO_ANALYZE=1` skips
//! refreshing the planner's statistics after seeding, to see what an
//! unanalyzed database costs).
//!
//! The load and what it measures are `segments_tests::load`, shared with
//! the same load over separate `segments` processes
//! (`cargo bench -p segments --bench processes`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use segments_tests::load::{self, Api, Observer, PhaseReport};
use segments_tests::{Backend, TestApp};

fn main() {
    let seconds = load::seconds_from_env();
    let rate: u64 = std::env::var("INCREMENTAL_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let backend = match std::env::var("INCREMENTAL_BACKEND").as_deref() {
        Ok("sqlite") => Backend::Sqlite,
        _ => Backend::Postgres,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // `INCREMENTAL_QUEUED=1`: writes only queue their changes
        // (`redis.apply_before_answering = false`), to compare the two paths.
        let app = Arc::new(if std::env::var_os("INCREMENTAL_QUEUED").is_some() {
            TestApp::spawn_queued(backend, "redis://127.0.0.1:6379", 1).await
        } else {
            TestApp::spawn_materialized(backend, "redis://127.0.0.1:6379", 1).await
        });
        let api = Api::new(vec![app.address.clone()], app.key.clone());
        let ids = api.seed_contacts().await;
        // As autovacuum would have by the time a real workspace of this size
        // is segmented (CI's PostgreSQL runs without it).
        if std::env::var_os("INCREMENTAL_NO_ANALYZE").is_none() {
            app.store.refresh_statistics().await.unwrap();
        }
        let probe = api.create_probe().await;
        // The other segments go straight to the store (creating a thousand
        // through the API re-validates the growing catalog each time), then
        // are built by the workers like any segment.
        let ws = app
            .store
            .authenticate(&app.key)
            .await
            .unwrap()
            .unwrap()
            .workspace_id;
        let jobs = app.materialized.as_ref().unwrap().jobs.clone();
        let segments: usize = std::env::var("INCREMENTAL_SEGMENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(load::SEGMENTS);
        for i in 1..segments {
            let record = app
                .store
                .create_segment(
                    ws,
                    &format!("s{i}"),
                    &segments_store::SegmentRule::Dynamic(load::segment_tree(i)),
                    segments_conditions::Limits::default(),
                )
                .await
                .unwrap();
            jobs.rebuild(ws, record.id).await;
        }
        // Wait until every segment is built.
        let m = app.materialized.as_ref().unwrap().materializer.clone();
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let records = app.store.segment_records(ws).await.unwrap();
            let mut built = 0;
            for r in &records {
                if m.status(ws, r.id).await.unwrap().is_some() {
                    built += 1;
                }
            }
            if built == records.len() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "segments not built: {built}/{}",
                records.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("{segments} segments built over {} contacts", ids.len());
        let observer = Observer {
            redis_url: "redis://127.0.0.1:6379".into(),
            events_key: m.keys().events(ws),
            segment: probe,
            members_key: m.keys().members(ws, segments_domain::SegmentId(probe)),
        };
        let rates = load::rates_from_env(&[100, 200, rate]);
        let app_ref = &app;
        let m_ref = &m;
        load::phases(
            &api,
            &observer,
            &ids,
            &rates,
            seconds,
            Duration::from_secs(5),
            async |report| {
                explain_unseen(app_ref, m_ref, ws, probe, report).await;
                if std::env::var_os("INCREMENTAL_METRICS").is_some() {
                    for line in report.by_second() {
                        println!("  {line}");
                    }
                    // Where the time went: the worker's own view of its jobs,
                    // cumulative over the run.
                    for line in app_ref.metrics().await.lines() {
                        if line.contains("kind=\"contacts_changed\"")
                            || line.starts_with("segments_change_notice_wait")
                        {
                            println!("  {line}");
                        }
                    }
                }
                println!("{}", report.summary());
            },
        )
        .await;
        match Arc::try_unwrap(app) {
            Ok(app) => app.stop().await,
            Err(_) => println!("app still referenced; not stopped"),
        }
    });
}

/// For the first few writes acknowledged but never seen: the set, the
/// version applied, the build and the database's view of the contact.
async fn explain_unseen(
    app: &TestApp,
    m: &segments_worker::Materializer,
    ws: segments_domain::WorkspaceId,
    probe: i64,
    report: &PhaseReport,
) {
    use redis::AsyncCommands;
    let probe = segments_domain::SegmentId(probe);
    for w in report.unseen().take(5) {
        let mut conn = m.redis();
        let in_set: bool = conn
            .sismember(m.keys().members(ws, probe), w.contact)
            .await
            .unwrap();
        let applied: Option<i64> = conn
            .hget(m.keys().versions(ws, probe), w.contact)
            .await
            .unwrap();
        let built: Option<i64> = conn
            .hget(m.keys().meta(ws, probe), "built_seq")
            .await
            .unwrap();
        let id = segments_domain::ContactId(w.contact);
        let version = app
            .store
            .contact_versions(&[id])
            .await
            .unwrap()
            .get(&id)
            .copied();
        let tags = app.store.get_contact(ws, id).await.unwrap().tags;
        println!(
            "  unseen: contact {} (adding: {}): in set {in_set}, applied version {applied:?}, \
             build at {built:?}, database version {version:?}, tags {tags:?}",
            w.contact, w.add
        );
    }
}
