//! The `segments` binary as an operator runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_segments");

struct Scratch(PathBuf, String);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("segments-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir, name.to_owned())
    }

    fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(&self.0)
            // No config directory here: the built-in defaults apply, as for a
            // binary copied anywhere, with the database under this directory.
            .env(
                "SEGMENTS__DATABASE__URL",
                format!("sqlite://{}/data/s.db", self.0.display()),
            )
            .env("RUST_LOG", "warn")
            // A Redis key prefix of this test's own, removed afterwards.
            .env("SEGMENTS__REDIS__PREFIX", self.redis_prefix());
        c
    }

    fn redis_prefix(&self) -> String {
        // Per test: tests run at once, and a worker of one would take the
        // jobs of another from a shared queue.
        format!("segtest-cli-{}-{}", self.1, std::process::id())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let pattern = format!("{}*", self.redis_prefix());
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "redis-cli --scan --pattern '{pattern}' | xargs -r redis-cli DEL > /dev/null; \
                 redis-cli ZREM core:apalis:queues:list '{}_jobs:workers' > /dev/null",
                self.redis_prefix()
            ))
            .status();
    }
}

#[test]
fn openapi_prints_the_document() {
    let out = Command::new(BIN).arg("openapi").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        segments_api::openapi::document(&segments_conditions::Registry::builtin())
    );
}

#[test]
fn workspace_create_prints_a_working_key_and_serve_stops_on_sigterm() {
    let scratch = Scratch::new("serve");
    let key = create_workspace(&scratch);
    let port = free_port();
    let mut server = scratch
        .command()
        .arg("serve")
        .env("SEGMENTS__HTTP__BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(port);
    let contacts = http(port, "GET", "/v1/contacts", &key, "").unwrap_or_default();
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let status = server.wait().unwrap();
    assert!(
        contacts.starts_with("HTTP/1.1 200"),
        "the server did not accept the created key: {contacts}"
    );
    assert!(status.success(), "serve exited with {status} on SIGTERM");
}

#[test]
fn migrate_creates_the_sqlite_file_and_its_directory() {
    let scratch = Scratch::new("migrate");
    let out = scratch.command().arg("migrate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(scratch.0.join("data/s.db").exists());
}

/// Runs `segments workspace create` and returns the key.
fn create_workspace(scratch: &Scratch) -> String {
    let out = scratch
        .command()
        .args(["workspace", "create", "Acme"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .find(|w| w.starts_with("seg_"))
        .expect("a key")
        .to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn import_reports_rejected_lines_and_is_idempotent_by_external_id() {
    let scratch = Scratch::new("import");
    create_workspace(&scratch);
    let csv = scratch.0.join("contacts.csv");
    std::fs::write(
        &csv,
        "external_id,name,email,tags,opted_in,first_contacted_at\n\
         a1,Ada,ada@example.com,vip|beta,yes,2026-01-02T00:00:00Z\n\
         a2,Bob,not-an-email,,no,\n\
         a3,Cy,,x,maybe,\n\
         a4,Short\n\
         a5,Eve,,,,\n",
    )
    .unwrap();
    let import = |path: &std::path::Path| {
        let out = scratch
            .command()
            .args(["import", "--workspace", "1", "--quiet"])
            .arg(path)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    let (code, out) = import(&csv);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("5 row(s)"), "{out}");
    assert!(out.contains("2 created, 0 updated, 3 rejected"), "{out}");
    assert!(out.contains("line 3: /email:"), "{out}");
    assert!(out.contains("line 4: /opted_in:"), "{out}");
    assert!(
        out.contains("line 5: 2 cell(s) where the header has 6"),
        "{out}"
    );

    // The same file again updates, never duplicates.
    let (_, again) = import(&csv);
    assert!(
        again.contains("0 created, 2 updated, 3 rejected"),
        "{again}"
    );

    // NDJSON items are bulk-upsert items: a1 is updated, n1 created.
    let ndjson = scratch.0.join("contacts.ndjson");
    std::fs::write(
        &ndjson,
        "{\"external_id\": \"a1\", \"name\": \"Ada L.\"}\n\n{\"external_id\": \"n1\", \"tags\": [\"new\"]}\n",
    )
    .unwrap();
    let (code, out) = import(&ndjson);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1 created, 1 updated, 0 rejected"), "{out}");

    let unknown = scratch.0.join("bad.csv");
    std::fs::write(&unknown, "external_id,shoe_size\na,42\n").unwrap();
    let out = scratch
        .command()
        .args(["import", "--workspace", "1", "--quiet"])
        .arg(&unknown)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown column `shoe_size`"));
}

/// Waits until `GET /readyz` answers 200.
fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http(port, "GET", "/readyz", "", "").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the server never became ready");
}

/// One HTTP/1.1 request over a fresh connection, answered in full; `None`
/// when nothing listens. Raw, so a test can also stop halfway through one.
fn http(port: u16, method: &str, path: &str, key: &str, body: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    Some(reply)
}

#[test]
fn sigterm_drains_in_flight_requests_and_queued_jobs_survive() {
    use std::io::{Read, Write};
    let scratch = Scratch::new("drain");
    let key = create_workspace(&scratch);
    let port = free_port();
    // The API alone: jobs it enqueues wait in Redis for a worker. The
    // reconciler is kept out of the way (yearly), so only jobs can fill sets.
    let mut api = scratch
        .command()
        .args(["serve", "--no-worker"])
        .env("SEGMENTS__HTTP__BIND", format!("127.0.0.1:{port}"))
        .env("SEGMENTS__WORKER__RECONCILE_SCHEDULE", "0 0 0 1 1 *")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(port);

    let created = http(
        port,
        "POST",
        "/v1/segments",
        &key,
        r#"{"name": "vip", "kind": "dynamic", "conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}}"#,
    )
    .unwrap_or_default();
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");

    // A request in flight when SIGTERM arrives: headers and half the body sent.
    let body = r#"{"contacts": [{"external_id": "x1", "tags": ["vip"]}, {"external_id": "x2", "tags": ["vip"]}]}"#;
    let (head, tail) = body.split_at(body.len() / 2);
    let mut in_flight = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        in_flight,
        "POST /v1/contacts/bulk-upsert HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
        body.len()
    )
    .unwrap();
    in_flight.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-TERM", &api.id().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(500));
    // Stopped accepting: a new connection is refused or closed unanswered.
    let refused = match std::net::TcpStream::connect(("127.0.0.1", port)) {
        Err(_) => true,
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut buf = [0u8; 16];
            !matches!(s.read(&mut buf), Ok(n) if n > 0)
        }
    };
    assert!(refused, "a new connection was served after SIGTERM");
    // The in-flight request completes.
    in_flight.write_all(tail.as_bytes()).unwrap();
    let mut reply = String::new();
    in_flight.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let status = api.wait().unwrap();
    assert!(status.success(), "serve exited with {status}");

    // The jobs the API enqueued are still in Redis: a worker started now
    // materializes the segment and its two members.
    let mut worker = scratch
        .command()
        .arg("worker")
        .env("SEGMENTS__WORKER__RECONCILE_SCHEDULE", "0 0 0 1 1 *")
        .env("SEGMENTS__WORKER__METRICS_BIND", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let members_key = format!("{}:{{1}}:segment:1:members", scratch.redis_prefix());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut members = String::new();
    while Instant::now() < deadline {
        let out = Command::new("redis-cli")
            .args(["SMEMBERS", &members_key])
            .output()
            .unwrap();
        members = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut ids: Vec<&str> = members.split_whitespace().collect();
        ids.sort_unstable();
        if ids == ["1", "2"] {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    let worker_status = worker.wait().unwrap();
    let mut ids: Vec<&str> = members.split_whitespace().collect();
    ids.sort_unstable();
    assert_eq!(ids, ["1", "2"], "the queued jobs were not run");
    assert!(
        worker_status.success(),
        "worker exited with {worker_status}"
    );
}
