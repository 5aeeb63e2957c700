//! Incremental latency: with 1,000 dynamic segments defined and contact
//! writes through the API at a fixed rate, the time from the request's
//! start to the Redis set showing the change, and the request's own time
//! (a write applies its change before it answers, so the first includes
//! the second).
//!
//! `cargo bench --workspace --bench incremental` (PostgreSQL on 127.0.0.1,
//! Redis on 127.0.0.1:6379; `INCREMENTAL_SECONDS`, `INCREMENTAL_RATE` and
//! `INCREMENTAL_BACKEND=sqlite` adjust it; `INCREMENTAL_QUEUED=1` has writes
//! only queue their changes, as before read-your-writes; `INCREMENTAL_NO_ANALYZE=1` skips
//! refreshing the planner's statistics after seeding, to see what an
//! unanalyzed database costs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use segments_domain::SegmentId;
use segments_tests::{Backend, TestApp};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const CONTACTS: usize = 5_000;
const SEGMENTS: usize = 1_000;
const PLANS: [&str; 3] = ["free", "pro", "team"];
const CHANNELS: [&str; 3] = ["whatsapp", "sms", "email"];

fn segment_tree(i: usize) -> Value {
    match i % 4 {
        0 => {
            json!({"type": "tag", "params": {"op": "has_any", "tags": [format!("tag-{}", i % 50)]}})
        }
        1 => json!({"all": [
            {"type": "attribute", "params": {"key": "score", "op": "ge", "value": i % 100}},
            {"type": "opt_in", "params": {"opted_in": true}}
        ]}),
        2 => json!({"any": [
            {"type": "channel", "params": {"op": "in", "channels": ["sms"]}},
            {"type": "tag", "params": {"op": "has_all", "tags": [format!("tag-{}", i % 50), "customer"]}}
        ]}),
        _ => {
            json!({"type": "attribute", "params": {"key": "plan", "op": "eq", "value": PLANS[i % 3]}})
        }
    }
}

fn main() {
    let seconds: u64 = std::env::var("INCREMENTAL_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
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
        app.attribute("score", "number").await;
        app.attribute("plan", "text").await;
        let mut ids = Vec::with_capacity(CONTACTS);
        for start in (0..CONTACTS).step_by(1_000) {
            let contacts: Vec<Value> = (start..start + 1_000)
                .map(|i| json!({
                    "external_id": format!("c{i}"),
                    "channel": CHANNELS[i % 3],
                    "opted_in": i % 10 < 7,
                    "tags": [format!("tag-{}", i % 50), "customer"],
                    "attributes": {"score": i % 100, "plan": PLANS[i % 3]}
                }))
                .collect();
            let r = app.post("/v1/contacts/bulk-upsert", json!({"contacts": contacts})).await.expect(200);
            ids.extend(r["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()));
        }
        // As autovacuum would have by the time a real workspace of this size
        // is segmented (CI's PostgreSQL runs without it).
        if std::env::var_os("INCREMENTAL_NO_ANALYZE").is_none() {
            app.store.refresh_statistics().await.unwrap();
        }
        let probe = app
            .post("/v1/segments", json!({"name": "probe", "kind": "dynamic", "conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["probe"]}}}))
            .await
            .expect(201)["id"]
            .as_i64()
            .unwrap();
        // The other segments go straight to the store (creating a thousand
        // through the API re-validates the growing catalog each time), then
        // are built by the workers like any segment.
        let ws = app.store.authenticate(&app.key).await.unwrap().unwrap().workspace_id;
        let jobs = app.materialized.as_ref().unwrap().jobs.clone();
        let segments: usize = std::env::var("INCREMENTAL_SEGMENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(SEGMENTS);
        for i in 1..segments {
            let record = app
                .store
                .create_segment(ws, &format!("s{i}"), &segments_store::SegmentRule::Dynamic(segment_tree(i)), segments_conditions::Limits::default())
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
            assert!(Instant::now() < deadline, "segments not built: {built}/{}", records.len());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("{segments} segments built over {CONTACTS} contacts");
        let rates: Vec<u64> = std::env::var("INCREMENTAL_RATES")
            .ok()
            .map(|v| v.split(',').filter_map(|r| r.parse().ok()).collect())
            .unwrap_or_else(|| vec![100, 200, rate]);
        let mut add = true;
        for rate in rates {
            phase(&app, &m, ws, &ids, SegmentId(probe), rate, seconds, add).await;
            // The next phase undoes what this one left: a phase that made two
            // passes over the contacts left them as they were.
            let passes = (rate * seconds).div_ceil(ids.len() as u64);
            if passes % 2 == 1 {
                add = !add;
            }
            // Let the queue drain before the next phase.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        match Arc::try_unwrap(app) {
            Ok(app) => app.stop().await,
            Err(_) => println!("app still referenced; not stopped"),
        }
    });
}

/// Watches the workspace's event stream (written in the same script as the
/// set itself) and records when each contact entered or left `probe`: one
/// reader, so observing does not load Redis the way polling every set would.
async fn watch_events(
    m: Arc<segments_worker::Materializer>,
    ws: segments_domain::WorkspaceId,
    probe: SegmentId,
    seen: Arc<Mutex<std::collections::HashMap<(i64, bool), Instant>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    use redis::AsyncCommands;
    use redis::streams::{StreamReadOptions, StreamReadReply};
    // A connection of its own: a blocking read must not hold up the
    // materializer's multiplexed connection.
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = m.keys().events(ws);
    // Read from an explicit id: re-reading from `$` after a read that timed
    // out would miss events appended between the two reads (a whole job's
    // worth at once, at the start of a phase).
    let newest: redis::streams::StreamRangeReply =
        conn.xrevrange_count(&key, "+", "-", 1).await.unwrap();
    let mut last = newest
        .ids
        .first()
        .map_or_else(|| "0-0".to_owned(), |entry| entry.id.clone());
    let options = StreamReadOptions::default().block(200).count(10_000);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let reply: Option<StreamReadReply> = conn
            .xread_options(&[&key], &[&last], &options)
            .await
            .unwrap();
        let now = Instant::now();
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in stream.ids {
                last.clone_from(&entry.id);
                let field = |name: &str| entry.get::<String>(name);
                if field("segment") == Some(probe.0.to_string())
                    && let Some(contact) = field("contact").and_then(|c| c.parse().ok())
                {
                    let entered = field("change").as_deref() == Some("entered");
                    seen.lock().await.entry((contact, entered)).or_insert(now);
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn phase(
    app: &Arc<TestApp>,
    m: &Arc<segments_worker::Materializer>,
    ws: segments_domain::WorkspaceId,
    ids: &[i64],
    probe: SegmentId,
    rate: u64,
    seconds: u64,
    add: bool,
) {
    let seen = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = tokio::spawn(watch_events(
        m.clone(),
        ws,
        probe,
        seen.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acknowledged = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let failures = Arc::new(Mutex::new(0u64));
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let total = (rate * seconds) as usize;
    // A phase longer than the contacts last takes each one back: the second
    // pass undoes the first (its own event to wait for); a third would
    // repeat the first and could not be told apart.
    assert!(
        total <= 2 * ids.len(),
        "{total} writes over {} contacts: shorten the phase or lower the rate",
        ids.len()
    );
    let mut tasks = Vec::with_capacity(total);
    let started = Instant::now();
    for k in 0..total {
        ticker.tick().await;
        let app = app.clone();
        let acknowledged = acknowledged.clone();
        let failures = failures.clone();
        // Distinct contacts within a pass: each enters (or leaves) once.
        let contact = ids[k % ids.len()];
        let add = add != (k / ids.len() == 1);
        tasks.push(tokio::spawn(async move {
            let path = if add {
                format!("/v1/contacts/{contact}/tags")
            } else {
                format!("/v1/contacts/{contact}/tags/remove")
            };
            let sent = Instant::now();
            let reply = app.post(&path, json!({"tags": ["probe"]})).await;
            if reply.status.is_success() {
                acknowledged
                    .lock()
                    .await
                    .insert((contact, add), (sent, Instant::now()));
            } else {
                *failures.lock().await += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Wait for the stragglers (at most 60 s), then stop watching.
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().await.len() < acknowledged.lock().await.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.await.unwrap();
    let seen = seen.lock().await;
    let acknowledged = acknowledged.lock().await;
    // A write acknowledged but never seen is a lost change, or one that
    // moved nothing — removing the tag from a contact the phases before
    // never gave it (a removing phase over more contacts than the adding
    // one before it): say which, for the first few.
    let unseen: Vec<(i64, bool)> = acknowledged
        .keys()
        .filter(|c| !seen.contains_key(c))
        .take(5)
        .copied()
        .collect();
    for (contact, add) in unseen {
        use redis::AsyncCommands;
        let mut conn = m.redis();
        let in_set: bool = conn
            .sismember(m.keys().members(ws, probe), contact)
            .await
            .unwrap();
        let applied: Option<i64> = conn
            .hget(m.keys().versions(ws, probe), contact)
            .await
            .unwrap();
        let built: Option<i64> = conn
            .hget(m.keys().meta(ws, probe), "built_seq")
            .await
            .unwrap();
        let id = segments_domain::ContactId(contact);
        let version = app
            .store
            .contact_versions(&[id])
            .await
            .unwrap()
            .get(&id)
            .copied();
        let tags = app.store.get_contact(ws, id).await.unwrap().tags;
        println!(
            "  unseen: contact {contact} (adding: {add}): in set {in_set}, applied version {applied:?}, \
             build at {built:?}, database version {version:?}, tags {tags:?}"
        );
    }
    // Latency by the second of the phase its write was acknowledged in:
    // tells a start-up transient from a steady state (`INCREMENTAL_METRICS=1`).
    if std::env::var_os("INCREMENTAL_METRICS").is_some() {
        let mut by_second: std::collections::BTreeMap<u64, Vec<Duration>> = Default::default();
        for (c, (sent, _)) in acknowledged.iter() {
            if let Some(at) = seen.get(c) {
                let second = sent.saturating_duration_since(started).as_secs();
                by_second
                    .entry(second)
                    .or_default()
                    .push(at.saturating_duration_since(*sent));
            }
        }
        for (second, mut l) in by_second {
            l.sort();
            println!(
                "  second {second}: {} writes, p50 {:.1} ms, max {:.1} ms, {} over 50 ms",
                l.len(),
                l[l.len() / 2].as_secs_f64() * 1e3,
                l[l.len() - 1].as_secs_f64() * 1e3,
                l.iter().filter(|d| **d > Duration::from_millis(50)).count()
            );
        }
    }
    let mut l: Vec<Duration> = acknowledged
        .iter()
        .filter_map(|(c, (sent, _))| seen.get(c).map(|at| at.saturating_duration_since(*sent)))
        .collect();
    l.sort();
    let mut requests: Vec<Duration> = acknowledged
        .values()
        .map(|(sent, ack)| ack.saturating_duration_since(*sent))
        .collect();
    requests.sort();
    if l.is_empty() {
        println!("{rate}/s: nothing observed");
        return;
    }
    // Where the time went: the worker's own view of its jobs, cumulative
    // over the run (`INCREMENTAL_METRICS=1`).
    if std::env::var_os("INCREMENTAL_METRICS").is_some() {
        for line in app.metrics().await.lines() {
            if line.contains("kind=\"contacts_changed\"")
                || line.starts_with("segments_change_notice_wait")
            {
                println!("  {line}");
            }
        }
    }
    let at = |l: &[Duration], p: f64| {
        l[((l.len() as f64 * p) as usize).min(l.len() - 1)].as_secs_f64() * 1e3
    };
    let pct = |p: f64| at(&l, p);
    println!(
        "{rate} writes/s for {seconds} s ({}): {} acknowledged, {} seen in the set, {} failed; request start -> set: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; request: p50 {:.1} ms, p99 {:.1} ms",
        if add {
            "adding the probe tag"
        } else {
            "removing it"
        },
        acknowledged.len(),
        l.len(),
        failures.lock().await,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        at(&requests, 0.5),
        at(&requests, 0.99)
    );
}
