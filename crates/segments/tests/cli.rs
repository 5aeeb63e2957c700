//! The `segments` binary as an operator runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_segments");

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("segments-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
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
        format!("segtest-cli-{}", std::process::id())
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
        segments_api::openapi::document()
    );
}

#[test]
fn workspace_create_prints_a_working_key_and_serve_stops_on_sigterm() {
    let scratch = Scratch::new("serve");
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
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = stdout
        .split_whitespace()
        .find(|w| w.starts_with("seg_"))
        .expect("a key")
        .to_owned();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = scratch
        .command()
        .arg("serve")
        .env("SEGMENTS__HTTP__BIND", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let ready = rt.block_on(async {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status() == 200
            {
                let contacts = client
                    .get(format!("{base}/v1/contacts"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap();
                return contacts.status().as_u16();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        0
    });
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let status = server.wait().unwrap();
    assert_eq!(ready, 200, "the server never answered with the created key");
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
