//! Nothing secret reaches a log, at any level: the app runs with every
//! target at TRACE into a buffer, is sent credentials the ways clients
//! send them, and the buffer is searched for them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use reqwest::Method;
use segments_store::DatabaseSettings;
use segments_tests::{Backend, TestApp};
use serde_json::json;

/// Everything logged in this process (one test per binary: the
/// subscriber is global, so the server's threads log here too).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const PASSWORD: &str = "pw-7c1e9b-never-logged";

/// The URL with a password for its user (the test server trusts every
/// local connection, so any password connects).
fn with_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    match rest.split_once('@') {
        Some((user, host)) => format!(
            "{scheme}://{}:{PASSWORD}@{host}",
            user.split(':').next().unwrap()
        ),
        None => format!("{scheme}://postgres:{PASSWORD}@{rest}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    let captured = Captured::default();
    let sink = captured.clone();
    tracing_subscriber::fmt()
        // The test's own HTTP client logs what it sends: not the server's.
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "trace,reqwest=off,hyper=off,hyper_util=off,h2=off",
        ))
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init();
    let app = TestApp::spawn_tuned(Backend::Postgres, &|s| DatabaseSettings {
        url: with_password(&s.url),
        ..s
    })
    .await;
    let key = app.key.clone();
    let made_up = "sk_0000000000000000000000000000000000000000000000";
    // The key in the header, and in the query string too, as careless
    // clients send it; a made-up key both ways.
    let sent = [
        (key.as_str(), format!("/v1/contacts?limit=1&api_key={key}")),
        (key.as_str(), format!("/v1/tags?token={key}")),
        (made_up, format!("/v1/contacts?api_key={made_up}")),
    ];
    for (bearer, path) in &sent {
        let _ = app.call_as(bearer, Method::GET, path, None).await;
    }
    app.post("/v1/contacts", json!({"name": "Logged"}))
        .await
        .expect(201);
    app.post("/v1/api-keys", json!({"name": "second"}))
        .await
        .expect(201);
    app.stop().await;

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(logs.contains("HTTP request"), "nothing was captured");
    assert!(logs.contains("/v1/contacts"), "requests were not traced");
    for secret in [PASSWORD, key.as_str(), made_up] {
        let at = logs.find(secret);
        assert!(
            at.is_none(),
            "a secret was logged: …{}…",
            &logs[at.unwrap().saturating_sub(200)..(at.unwrap() + 60).min(logs.len())]
        );
    }
}
