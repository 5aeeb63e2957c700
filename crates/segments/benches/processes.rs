//! Horizontal scale: the incremental load (`segments_tests::load`: 5,000
//! contacts, 1,000 dynamic segments, tag writes through the API at fixed
//! rates, each timed from the request's start to the set showing it) over
//! separate `segments` processes on one PostgreSQL and one Redis, as an
//! operator scales out: N API processes (`segments serve --no-worker`, the
//! writes spread over them in turn) and M worker processes (`segments
//! worker`), each deployment on a database and Redis prefix of its own.
//!
//! With `PROCESSES_REBUILD=1` it measures instead a rebuild of a
//! 500,000-member segment of the seeded database while writes continue
//! (`rebuild_under_writes`; `REBUILD_WRITE_RATE`, default 500/s).
//!
//! Run: `cargo bench -p segments --bench processes`
//! (`PROCESSES=1:1,2:2` the API:worker deployments; `INCREMENTAL_RATES`
//! `INCREMENTAL_SECONDS` and `INCREMENTAL_CONTACTS` as in the in-process benchmark; PostgreSQL
//! from `SEGMENTS_TEST_POSTGRES_URL`, Redis on 127.0.0.1:6379).
//!
//! The processes run the shipped `config/default.toml` except: no rate
//! limit (it is per process, and would cap one process at 1,000/s), logs
//! at `warn` (as the in-process benchmark, which logs nothing), the
//! reconciler's schedule off (every test and benchmark measures the
//! primary path alone) and no worker metrics listener (they would share
//! one port).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use segments_conditions::Registry;
use segments_domain::{SegmentId, WorkspaceId};
use segments_store::Store;
use segments_tests::load::{self, Api, Observer, PhaseReport, Watch};
use segments_tests::{Backend, TestDatabase};
use segments_worker::keys::Keys;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_segments");
const REDIS: &str = "redis://127.0.0.1:6379";

/// The shipped configuration.
fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One deployment: its processes, database and Redis prefix, all removed
/// when it is dropped.
struct Deployment {
    children: Vec<Child>,
    apis: Vec<String>,
    prefix: String,
    logs: PathBuf,
    database: Database,
}

/// A database of the deployment's own, or the seeded one (kept).
enum Database {
    Own(TestDatabase),
    Seeded(String),
}

impl Database {
    fn url(&self) -> &str {
        match self {
            Self::Own(d) => d.url(),
            Self::Seeded(url) => url,
        }
    }

    fn settings(&self) -> segments_store::DatabaseSettings {
        segments_store::DatabaseSettings {
            url: self.url().to_owned(),
            max_connections: 4,
            acquire_timeout: Duration::from_secs(30),
            analytics: Default::default(),
        }
    }
}

impl Deployment {
    async fn new(database: Database) -> Self {
        let prefix = format!("bench-processes-{}", std::process::id());
        let logs = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&logs).unwrap();
        Self {
            children: Vec::new(),
            apis: Vec::new(),
            prefix,
            logs,
            database,
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config-dir")
            .arg(config_dir())
            .env("SEGMENTS__DATABASE__URL", self.database.url())
            .env("SEGMENTS__DATABASE__MIGRATE_ON_START", "false")
            .env("SEGMENTS__REDIS__URL", REDIS)
            .env("SEGMENTS__REDIS__PREFIX", &self.prefix)
            .env("SEGMENTS__HTTP__RATE_LIMIT_PER_SECOND", "0")
            .env("SEGMENTS__WORKER__RECONCILE_SCHEDULE", "0 0 0 1 1 * 2099")
            .env("SEGMENTS__WORKER__METRICS_BIND", "")
            .env("RUST_LOG", "warn");
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "segments {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A store over the deployment's database, and the workspace of `key`.
    async fn workspace(&self, key: &str) -> (Store, WorkspaceId) {
        let store = Store::connect(&self.database.settings(), Arc::new(Registry::builtin()))
            .await
            .unwrap();
        let ws = store
            .authenticate(key)
            .await
            .unwrap()
            .expect("a valid key")
            .workspace_id;
        (store, ws)
    }

    /// Runs a command that may exit non-zero (`verify` exits 1 on drift);
    /// its output.
    fn run_status(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn spawn(&mut self, name: &str, args: &[&str], bind: Option<u16>) {
        let log = std::fs::File::create(self.logs.join(format!("{name}.log"))).unwrap();
        let mut c = self.command();
        c.args(args).stdout(Stdio::null()).stderr(Stdio::from(log));
        if let Some(port) = bind {
            c.env("SEGMENTS__HTTP__BIND", format!("127.0.0.1:{port}"));
        }
        self.children.push(c.spawn().unwrap());
    }

    /// Starts `apis` API processes and `workers` worker processes; returns
    /// once every API answers `/readyz`.
    async fn start(&mut self, apis: usize, workers: usize) {
        for n in 0..workers {
            self.spawn(&format!("worker-{n}"), &["worker"], None);
        }
        for n in 0..apis {
            let port = free_port();
            self.spawn(&format!("api-{n}"), &["serve", "--no-worker"], Some(port));
            self.apis.push(format!("http://127.0.0.1:{port}"));
        }
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        for api in &self.apis {
            while !client
                .get(format!("{api}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                assert!(
                    Instant::now() < deadline,
                    "{api} never became ready (logs in {})",
                    self.logs.display()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for child in &mut self.children {
            // SIGTERM: each drains and deregisters its workers.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "redis-cli --scan --pattern '{p}*' | xargs -r redis-cli DEL > /dev/null; \
                 redis-cli ZREM core:apalis:queues:list '{p}_jobs:workers' > /dev/null",
                p = self.prefix
            ))
            .status();
        let _ = std::fs::remove_dir_all(&self.logs);
    }
}

/// One deployment of `apis` API and `workers` worker processes, from an
/// empty database to every phase of `rates`.
async fn measure(apis: usize, workers: usize, rates: &[u64], seconds: u64) -> Vec<PhaseReport> {
    let mut d = Deployment::new(Database::Own(TestDatabase::create(Backend::Postgres).await)).await;
    d.run(&["migrate"]);
    let created = d.run(&["workspace", "create", "bench"]);
    let key = created
        .lines()
        .find_map(|l| {
            l.split_once("keep it safe): ")
                .map(|(_, k)| k.trim().to_owned())
        })
        .expect("the key `workspace create` printed");
    d.start(apis, workers).await;
    let (store, ws) = d.workspace(&key).await;
    let api = Api::new(d.apis.clone(), key);
    let ids = api.seed_contacts().await;
    // As autovacuum would have by the time a real workspace of this size is
    // segmented (CI's PostgreSQL runs without it).
    store.refresh_statistics().await.unwrap();
    let probe = api.create_probe().await;
    // Through the API, as a user would: each creation queues its build.
    let started = Instant::now();
    let mut segments = vec![probe];
    for i in 1..load::SEGMENTS {
        let (status, reply) = api
            .post(
                i,
                "/v1/segments",
                &json!({"name": format!("s{i}"), "kind": "dynamic", "conditions": load::segment_tree(i)}),
            )
            .await;
        assert_eq!(status, 201, "{reply}");
        segments.push(reply["id"].as_i64().unwrap());
    }
    let keys = Keys::new(d.prefix.clone());
    wait_built(&keys, ws, &segments).await;
    println!(
        "{apis} API + {workers} worker process(es): {} segments created and built over {} contacts in {:.1} s",
        segments.len(),
        ids.len(),
        started.elapsed().as_secs_f64()
    );
    let observer = Observer {
        redis_url: REDIS.into(),
        events_key: keys.events(ws),
        segment: probe,
        members_key: keys.members(ws, SegmentId(probe)),
    };
    // Fresh processes open their pools' connections on first use: one
    // unmeasured phase first, so the first measured rate is not the
    // processes' start-up.
    load::reset(&api, &observer, &ids).await;
    let warm_up = load::phase(&api, &observer, &ids, 500, 2).await;
    println!("  (warm-up) {}", warm_up.summary());
    load::phases(
        &api,
        &observer,
        &ids,
        rates,
        seconds,
        Duration::from_secs(3),
        async |report| {
            println!("  {}", report.summary());
            if std::env::var_os("INCREMENTAL_METRICS").is_some() {
                for line in report.by_second() {
                    println!("    {line}");
                }
            }
        },
    )
    .await
}

/// Waits until every one of `segments` has a built set.
async fn wait_built(keys: &Keys, ws: WorkspaceId, segments: &[i64]) {
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut pipe = redis::pipe();
        for id in segments {
            pipe.hexists(keys.meta(ws, SegmentId(*id)), "built_at");
        }
        let built: Vec<bool> = pipe.query_async(&mut conn).await.unwrap();
        let done = built.iter().filter(|b| **b).count();
        if done == segments.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "segments not built: {done}/{}",
            segments.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A segment of half the seeded workspace (first contacted within 548
/// days of the seed's anchor, and not tagged `rebuild-probe`), rebuilt
/// three times quietly, then again and again while writes at `rate` take
/// 5,000 of its members out and back in through the API; then `segments
/// verify` compares the set with SQL. Over the seeded database
/// (`BENCH_DATABASE_URL`, `BENCH_API_KEY`: BENCHMARKS.md), which it leaves
/// as it found it but for the tag.
async fn rebuild_under_writes(rate: u64, seconds: u64) {
    use chrono::{Duration as Days, TimeZone, Utc};
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/segments_bench".into());
    let key =
        std::env::var("BENCH_API_KEY").expect("BENCH_API_KEY: the key `segments seed` printed");
    let mut d = Deployment::new(Database::Seeded(url)).await;
    d.start(1, 1).await;
    let (store, ws) = d.workspace(&key).await;
    let api = Api::new(d.apis.clone(), key);
    let anchor = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let conditions = json!({"all": [
        {"type": "first_contacted", "params": {"op": "between",
            "from": (anchor - Days::days(548)).to_rfc3339(), "to": anchor.to_rfc3339()}},
        {"not": {"type": "tag", "params": {"op": "has_any", "tags": ["rebuild-probe"]}}}
    ]});
    let (status, reply) = api
        .post(
            0,
            "/v1/segments",
            &json!({"name": format!("half {}", std::process::id()), "kind": "dynamic", "conditions": conditions}),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    let segment = reply["id"].as_i64().unwrap();
    let keys = Keys::new(d.prefix.clone());
    wait_built(&keys, ws, &[segment]).await;
    let observer = Observer {
        redis_url: REDIS.into(),
        events_key: keys.events(ws),
        segment,
        members_key: keys.members(ws, SegmentId(segment)),
    };
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let members: u64 = redis::cmd("SCARD")
        .arg(&observer.members_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut ids: Vec<i64> = redis::cmd("SRANDMEMBER")
        .arg(&observer.members_key)
        .arg(5_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    ids.sort_unstable();
    let watch = Watch::start(&observer).await;
    let rebuild = async |n: usize| {
        let asked = Instant::now();
        let (status, reply) = api
            .post(0, &format!("/v1/segments/{segment}/rebuild"), &json!({}))
            .await;
        assert_eq!(status, 202, "{reply}");
        let done = watch
            .wait_rebuilds(n, Duration::from_secs(120))
            .await
            .expect("the rebuild finished");
        (asked, done)
    };
    let mut quiet = Vec::new();
    for n in 1..=3 {
        let (asked, done) = rebuild(n).await;
        quiet.push(done.duration_since(asked));
    }
    println!(
        "segment of {members} members: quiet rebuilds (request to `rebuilt`) {:?}",
        quiet
            .iter()
            .map(|d| format!("{:.3} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    let started = Instant::now();
    let total = (rate * seconds) as usize;
    let writes = {
        let api = api.clone();
        let ids = ids.clone();
        tokio::spawn(async move { load::write(&api, &ids, rate, total, "rebuild-probe").await })
    };
    // Rebuild back to back from the first second until the writes end.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut windows = Vec::new();
    let mut n = quiet.len();
    while !writes.is_finished() {
        n += 1;
        windows.push(rebuild(n).await);
    }
    let sent = writes.await.unwrap();
    let expected = sent.iter().filter(|s| s.answered.is_some()).count();
    watch.wait_moves(expected, Duration::from_secs(60)).await;
    let seen = watch.finish().await;
    let outcomes = load::outcomes(&sent, &seen, started, false);
    let during = |w: &load::Write| {
        let at = started + w.sent;
        windows.iter().any(|(a, b)| *a <= at && at <= *b)
    };
    let summarize = |label: &str, inside: bool| {
        let chosen: Vec<load::Write> = outcomes
            .iter()
            .filter(|w| during(w) == inside)
            .copied()
            .collect();
        let report = PhaseReport {
            rate,
            seconds,
            writes: chosen,
        };
        println!("  writes sent {label}: {}", report.summary());
    };
    let mut under: Vec<f64> = windows
        .iter()
        .map(|(a, b)| b.duration_since(*a).as_secs_f64())
        .collect();
    under.sort_by(f64::total_cmp);
    println!(
        "{} rebuilds while {rate} writes/s moved {} of its members: median {:.3} s, max {:.3} s",
        under.len(),
        ids.len(),
        under.get(under.len() / 2).copied().unwrap_or(f64::NAN),
        under.last().copied().unwrap_or(f64::NAN),
    );
    summarize("during a rebuild", true);
    summarize("between rebuilds", false);
    let lost = outcomes
        .iter()
        .filter(|w| w.answered.is_some() && w.seen.is_none())
        .count();
    println!("  acknowledged writes whose move never showed: {lost}");
    // The set against SQL, as an operator checks it.
    let verify = d.run_status(&["verify"]);
    let line = verify
        .lines()
        .find(|l| l.contains(&format!("segment {segment}:")))
        .unwrap_or("(segment not reported)")
        .to_owned();
    println!("  segments verify: {line}");
    // Leave the seeded workspace as it was.
    for chunk in ids.chunks(10_000) {
        api.post(
            0,
            "/v1/tags/remove",
            &json!({"contact_ids": chunk, "tags": ["rebuild-probe"]}),
        )
        .await;
    }
    store.delete_segment(ws, SegmentId(segment)).await.unwrap();
}

fn main() {
    let deployments: Vec<(usize, usize)> = std::env::var("PROCESSES")
        .unwrap_or_else(|_| "1:1,2:2".into())
        .split(',')
        .map(|d| {
            let (a, w) = d.split_once(':').expect("PROCESSES: api:workers,…");
            (a.trim().parse().unwrap(), w.trim().parse().unwrap())
        })
        .collect();
    let rates = load::rates_from_env(&[500, 1_000, 1_500, 2_000]);
    let seconds = std::env::var("INCREMENTAL_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::var_os("PROCESSES_REBUILD").is_some() {
        let rate = std::env::var("REBUILD_WRITE_RATE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500);
        rt.block_on(rebuild_under_writes(rate, seconds.max(10)));
        return;
    }
    let mut results = Vec::new();
    for (apis, workers) in deployments {
        let reports = rt.block_on(measure(apis, workers, &rates, seconds));
        results.push((apis, workers, reports));
    }
    println!("\nhighest rate with p99 (request start -> set) <= 50 ms, every write seen:");
    for (apis, workers, reports) in &results {
        match load::highest_rate_within(reports, 50.0) {
            Some(rate) => println!("  {apis} API + {workers} worker: {rate}/s"),
            None => println!("  {apis} API + {workers} worker: none of {rates:?}"),
        }
    }
}
