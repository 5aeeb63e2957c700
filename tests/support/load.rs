//! The incremental load the latency benchmarks share: a workspace of
//! contacts and 1,000 dynamic segments, then writes through the HTTP API at
//! a fixed rate (adding or removing the tag `probe`, which one segment
//! reads), each timed from the request's start to the contact's
//! `entered`/`exited` event in the workspace's stream — written by the same
//! Lua script, in the same instant, as the set itself.
//!
//! The API may be one process or several (`Api` spreads the writes over
//! its addresses in turn), in this process or not: the benchmarks over the
//! in-process app and over `segments` processes measure the same thing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Contacts in the workspace unless `INCREMENTAL_CONTACTS` says: a phase
/// writes each at most twice.
pub const CONTACTS: usize = 5_000;
/// Dynamic segments defined, the probe among them.
pub const SEGMENTS: usize = 1_000;
const PLANS: [&str; 3] = ["free", "pro", "team"];
const CHANNELS: [&str; 3] = ["whatsapp", "sms", "email"];

/// The `i`th segment's condition: tags, attribute ranges with opt-in,
/// channel-or-tags and attribute equality in turn.
pub fn segment_tree(i: usize) -> Value {
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

/// The segment every phase moves contacts in and out of.
pub fn probe_segment() -> Value {
    json!({"name": "probe", "kind": "dynamic",
           "conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["probe"]}}})
}

/// The API: one or more processes serving the same workspace.
#[derive(Debug, Clone)]
pub struct Api {
    client: reqwest::Client,
    bases: Arc<Vec<String>>,
    key: String,
}

impl Api {
    /// `bases` are `http://host:port` addresses; `key` the workspace's.
    pub fn new(bases: Vec<String>, key: String) -> Self {
        assert!(!bases.is_empty(), "an API needs an address");
        Self {
            // Idle connections are dropped before the server's keep-alive
            // (5 s) closes them: reusing one the server is closing fails
            // the request.
            client: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(4))
                .build()
                .expect("HTTP client"),
            bases: Arc::new(bases),
            key,
        }
    }

    /// How many processes the writes are spread over.
    pub fn processes(&self) -> usize {
        self.bases.len()
    }

    /// POSTs `body` to the `n`th request's process (in turn).
    pub async fn post(&self, n: usize, path: &str, body: &Value) -> (StatusCode, Value) {
        let base = &self.bases[n % self.bases.len()];
        let response = self
            .client
            .post(format!("{base}{path}"))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn expect(&self, path: &str, body: &Value, status: u16) -> Value {
        let (got, reply) = self.post(0, path, body).await;
        assert_eq!(got.as_u16(), status, "POST {path}: {reply}");
        reply
    }

    /// Declares the attributes the segments read and upserts the
    /// workspace's `contacts_from_env()` contacts; returns their ids in
    /// order.
    pub async fn seed_contacts(&self) -> Vec<i64> {
        let contacts = contacts_from_env();
        for (key, ty) in [("score", "number"), ("plan", "text")] {
            self.expect("/v1/attributes", &json!({"key": key, "type": ty}), 201)
                .await;
        }
        let mut ids = Vec::with_capacity(contacts);
        for start in (0..contacts).step_by(1_000) {
            let contacts: Vec<Value> = (start..(start + 1_000).min(contacts))
                .map(|i| {
                    json!({
                        "external_id": format!("c{i}"),
                        "channel": CHANNELS[i % 3],
                        "opted_in": i % 10 < 7,
                        "tags": [format!("tag-{}", i % 50), "customer"],
                        "attributes": {"score": i % 100, "plan": PLANS[i % 3]}
                    })
                })
                .collect();
            let reply = self
                .expect(
                    "/v1/contacts/bulk-upsert",
                    &json!({"contacts": contacts}),
                    200,
                )
                .await;
            ids.extend(
                reply["items"]
                    .as_array()
                    .expect("items")
                    .iter()
                    .map(|i| i["id"].as_i64().expect("an id")),
            );
        }
        ids
    }

    /// Creates the probe segment; returns its id.
    pub async fn create_probe(&self) -> i64 {
        self.expect("/v1/segments", &probe_segment(), 201).await["id"]
            .as_i64()
            .expect("a segment id")
    }
}

/// Where writes are seen to land: the workspace's event stream, for one
/// segment.
#[derive(Debug, Clone)]
pub struct Observer {
    /// The Redis holding the stream.
    pub redis_url: String,
    /// The stream's key (`Keys::events`).
    pub events_key: String,
    /// The segment watched.
    pub segment: i64,
    /// Its set (`Keys::members`).
    pub members_key: String,
}

/// One write of a phase.
#[derive(Debug, Clone, Copy)]
pub struct Write {
    pub contact: i64,
    /// Adding the probe tag (or removing it).
    pub add: bool,
    /// When it was sent, from the phase's start.
    pub sent: Duration,
    /// The request's own time, if it succeeded.
    pub answered: Option<Duration>,
    /// From the request's start to its event, if one was seen.
    pub seen: Option<Duration>,
}

/// What one phase measured.
#[derive(Debug, Clone)]
pub struct PhaseReport {
    pub rate: u64,
    pub seconds: u64,
    pub writes: Vec<Write>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

impl PhaseReport {
    /// Request start → set, sorted.
    pub fn to_set(&self) -> Vec<Duration> {
        let mut l: Vec<Duration> = self.writes.iter().filter_map(|w| w.seen).collect();
        l.sort();
        l
    }

    /// The requests' own times, sorted.
    pub fn requests(&self) -> Vec<Duration> {
        let mut l: Vec<Duration> = self.writes.iter().filter_map(|w| w.answered).collect();
        l.sort();
        l
    }

    pub fn acknowledged(&self) -> usize {
        self.writes.iter().filter(|w| w.answered.is_some()).count()
    }

    pub fn failed(&self) -> usize {
        self.writes.len() - self.acknowledged()
    }

    /// Acknowledged writes whose event never came: every write moves its
    /// contact, so each is a lost change.
    pub fn unseen(&self) -> impl Iterator<Item = &Write> {
        self.writes
            .iter()
            .filter(|w| w.answered.is_some() && w.seen.is_none())
    }

    /// p99 from the request's start to the set, in ms.
    pub fn p99_ms(&self) -> f64 {
        percentile(&self.to_set(), 0.99)
    }

    /// The phase's line: counts and percentiles.
    pub fn summary(&self) -> String {
        let l = self.to_set();
        let r = self.requests();
        format!(
            "{} writes/s for {} s: {} acknowledged, {} seen in the set, {} failed; \
             request start -> set: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             request: p50 {:.1} ms, p99 {:.1} ms",
            self.rate,
            self.seconds,
            self.acknowledged(),
            l.len(),
            self.failed(),
            percentile(&l, 0.5),
            percentile(&l, 0.9),
            percentile(&l, 0.99),
            percentile(&l, 1.0),
            percentile(&r, 0.5),
            percentile(&r, 0.99),
        )
    }

    /// Latency by the second of the phase each write was sent in: tells a
    /// start-up transient from a steady state.
    pub fn by_second(&self) -> Vec<String> {
        let mut seconds: std::collections::BTreeMap<u64, Vec<Duration>> = Default::default();
        for w in &self.writes {
            if let Some(seen) = w.seen {
                seconds.entry(w.sent.as_secs()).or_default().push(seen);
            }
        }
        seconds
            .into_iter()
            .map(|(second, mut l)| {
                l.sort();
                format!(
                    "second {second}: {} writes, p50 {:.1} ms, max {:.1} ms, {} over 50 ms",
                    l.len(),
                    percentile(&l, 0.5),
                    percentile(&l, 1.0),
                    l.iter().filter(|d| **d > Duration::from_millis(50)).count()
                )
            })
            .collect()
    }
}

/// What a `Watch` saw of its segment, with the instant it saw each.
#[derive(Debug, Default)]
pub struct Seen {
    /// The first `entered` (true) or `exited` (false) of each contact.
    pub moves: HashMap<(i64, bool), Instant>,
    /// Each full rebuild of the set (its `rebuilt` event).
    pub rebuilds: Vec<Instant>,
}

/// Reads the workspace's stream from its newest entry on, recording what
/// happens to one segment: one reader, so observing does not load Redis
/// the way polling every set would.
#[derive(Debug)]
pub struct Watch {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    /// Returns once the watch reads from the stream's current end.
    pub async fn start(observer: &Observer) -> Self {
        use redis::AsyncCommands;
        use redis::streams::StreamRangeReply;
        // A connection of its own: a blocking read holds it. No response
        // timeout: under an overload the benchmark is there to measure, a
        // blocking read's answer may come late, and that is no error.
        let client = redis::Client::open(observer.redis_url.as_str()).expect("redis URL");
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("redis");
        // Read from an explicit id: re-reading from `$` after a read that
        // timed out would miss events appended between the two reads.
        let newest: StreamRangeReply = conn
            .xrevrange_count(&observer.events_key, "+", "-", 1)
            .await
            .expect("XREVRANGE");
        let last = newest
            .ids
            .first()
            .map_or_else(|| "0-0".to_owned(), |entry| entry.id.clone());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(read_events(
            conn,
            observer.events_key.clone(),
            observer.segment.to_string(),
            last,
            seen.clone(),
            stop.clone(),
        ));
        Self { seen, stop, task }
    }

    /// How many contacts moved so far.
    pub async fn moves(&self) -> usize {
        self.seen.lock().await.moves.len()
    }

    /// How many rebuilds finished so far.
    pub async fn rebuilds(&self) -> usize {
        self.seen.lock().await.rebuilds.len()
    }

    /// Waits up to `within` for `moves` contacts to have moved.
    pub async fn wait_moves(&self, moves: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.moves().await < moves && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to `within` for the `n`th rebuild; its instant.
    pub async fn wait_rebuilds(&self, n: usize, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(at) = self.seen.lock().await.rebuilds.get(n - 1) {
                return Some(*at);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops reading; what was seen.
    pub async fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the watch");
        std::mem::take(&mut *self.seen.lock().await)
    }
}

async fn read_events(
    mut conn: redis::aio::MultiplexedConnection,
    key: String,
    segment: String,
    mut last: String,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    use redis::AsyncCommands;
    use redis::streams::{StreamReadOptions, StreamReadReply};
    let options = StreamReadOptions::default().block(200).count(10_000);
    while !stop.load(Ordering::Relaxed) {
        let reply: Option<StreamReadReply> = conn
            .xread_options(&[&key], &[&last], &options)
            .await
            .expect("XREAD");
        let now = Instant::now();
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in stream.ids {
                last.clone_from(&entry.id);
                let field = |name: &str| entry.get::<String>(name);
                if field("segment").as_deref() != Some(segment.as_str()) {
                    continue;
                }
                let change = field("change");
                let mut seen = seen.lock().await;
                match (
                    change.as_deref(),
                    field("contact").and_then(|c| c.parse().ok()),
                ) {
                    (Some("rebuilt"), _) => seen.rebuilds.push(now),
                    (Some(change), Some(contact)) => {
                        seen.moves
                            .entry((contact, change == "entered"))
                            .or_insert(now);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// One write sent by `write`, as it left.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub contact: i64,
    pub add: bool,
    pub at: Instant,
    /// The request's own time, if it succeeded.
    pub answered: Option<Duration>,
}

/// Sends `total` tag writes at `rate`, each contact of `ids` in turn,
/// adding `tag` (a second pass over the contacts removes it again).
pub async fn write(api: &Api, ids: &[i64], rate: u64, total: usize, tag: &str) -> Vec<Sent> {
    // A third pass would repeat the first and could not be told apart.
    assert!(
        total <= 2 * ids.len(),
        "{total} writes over {} contacts: shorten the phase or lower the rate",
        ids.len()
    );
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut tasks = Vec::with_capacity(total);
    for k in 0..total {
        ticker.tick().await;
        let api = api.clone();
        // Distinct contacts within a pass: each moves once.
        let contact = ids[k % ids.len()];
        let add = k < ids.len();
        let body = json!({"tags": [tag]});
        tasks.push(tokio::spawn(async move {
            let path = if add {
                format!("/v1/contacts/{contact}/tags")
            } else {
                format!("/v1/contacts/{contact}/tags/remove")
            };
            let at = Instant::now();
            let (status, _) = api.post(k, &path, &body).await;
            Sent {
                contact,
                add,
                at,
                answered: status.is_success().then(|| at.elapsed()),
            }
        }));
    }
    let mut sent = Vec::with_capacity(total);
    for t in tasks {
        sent.push(t.await.expect("a write task"));
    }
    sent
}

/// Each write with the instant its move was seen: adding the tag makes
/// the contact enter if `adding_enters`, else leave.
pub fn outcomes(sent: &[Sent], seen: &Seen, started: Instant, adding_enters: bool) -> Vec<Write> {
    sent.iter()
        .map(|s| Write {
            contact: s.contact,
            add: s.add,
            sent: s.at.saturating_duration_since(started),
            answered: s.answered,
            seen: s
                .answered
                .and(seen.moves.get(&(s.contact, s.add == adding_enters)))
                .map(|event| event.saturating_duration_since(s.at)),
        })
        .collect()
}

/// Writes at `rate` for `seconds`, each contact of `ids` in turn, adding
/// the probe tag (a second pass over the contacts removes it again), and
/// waits up to a minute for the events of those acknowledged. Every write
/// moves its contact: no contact may have the tag when it starts (`reset`).
pub async fn phase(
    api: &Api,
    observer: &Observer,
    ids: &[i64],
    rate: u64,
    seconds: u64,
) -> PhaseReport {
    let watch = Watch::start(observer).await;
    let started = Instant::now();
    let sent = write(api, ids, rate, (rate * seconds) as usize, "probe").await;
    let expected = sent.iter().filter(|s| s.answered.is_some()).count();
    watch.wait_moves(expected, Duration::from_secs(60)).await;
    let seen = watch.finish().await;
    PhaseReport {
        rate,
        seconds,
        writes: outcomes(&sent, &seen, started, true),
    }
}

/// Takes the probe tag off every contact of `ids` (one bulk write) and
/// waits for the probe's set to empty.
pub async fn reset(api: &Api, observer: &Observer, ids: &[i64]) {
    use redis::AsyncCommands;
    for chunk in ids.chunks(10_000) {
        api.expect(
            "/v1/tags/remove",
            &json!({"contact_ids": chunk, "tags": ["probe"]}),
            200,
        )
        .await;
    }
    let client = redis::Client::open(observer.redis_url.as_str()).expect("redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: u64 = conn.scard(&observer.members_key).await.expect("SCARD");
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} contacts still in the probe a minute after the reset"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One phase per rate, each from a reset (no contact tagged), with
/// `pause` before each for the queue to drain.
pub async fn phases(
    api: &Api,
    observer: &Observer,
    ids: &[i64],
    rates: &[u64],
    seconds: u64,
    pause: Duration,
    mut each: impl AsyncFnMut(&PhaseReport),
) -> Vec<PhaseReport> {
    let mut reports = Vec::with_capacity(rates.len());
    for &rate in rates {
        reset(api, observer, ids).await;
        tokio::time::sleep(pause).await;
        let report = phase(api, observer, ids, rate, seconds).await;
        each(&report).await;
        reports.push(report);
    }
    reports
}

/// The highest of `reports`' rates whose p99 (request start → set) is
/// within `bound_ms`, every write seen.
pub fn highest_rate_within(reports: &[PhaseReport], bound_ms: f64) -> Option<u64> {
    reports
        .iter()
        .filter(|r| r.unseen().next().is_none() && r.failed() == 0 && r.p99_ms() <= bound_ms)
        .map(|r| r.rate)
        .max()
}

/// `INCREMENTAL_RATES` (comma-separated), else `default`.
pub fn rates_from_env(default: &[u64]) -> Vec<u64> {
    std::env::var("INCREMENTAL_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

/// `INCREMENTAL_CONTACTS`, else `CONTACTS`.
pub fn contacts_from_env() -> usize {
    std::env::var("INCREMENTAL_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CONTACTS)
}

/// `INCREMENTAL_SECONDS`, else 10.
pub fn seconds_from_env() -> u64 {
    std::env::var("INCREMENTAL_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}
