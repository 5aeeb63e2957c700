//! One workspace's costly membership queries — searches, previews, counts
//! read from SQL — are stopped at their deadline and cannot take the
//! connections other workspaces' requests need.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::Method;
use segments_store::AnalyticsSettings;
use segments_tests::{Backend, TestApp, on_both_backends};
use serde_json::{Value, json};

/// Stores `n` contacts none of whose tags any condition below names, so
/// that a query over them evaluates every one of its conditions per row.
async fn populate(app: &TestApp, key: &str, n: usize) {
    for start in (0..n).step_by(1000) {
        let contacts: Vec<Value> = (start..(start + 1000).min(n))
            .map(|i| json!({"external_id": format!("c{i}"), "name": format!("C {i}"), "tags": ["other"]}))
            .collect();
        let reply = app
            .call_as(
                key,
                Method::POST,
                "/v1/contacts/bulk-upsert",
                Some(json!({"contacts": contacts})),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}

/// A tree within every limit whose evaluation is long: 10 references to a
/// segment of 100 tag conditions, 1,000 conditions once inlined.
async fn costly(app: &TestApp, key: &str) -> Value {
    let tags: Vec<_> = (0..100)
        .map(|i| json!({"type": "tag", "params": {"op": "has_any", "tags": [format!("t{i}")]}}))
        .collect();
    let reply = app
        .call_as(
            key,
            Method::POST,
            "/v1/segments",
            Some(json!({"name": "wide", "kind": "dynamic", "conditions": {"any": tags}})),
        )
        .await;
    let wide = reply.expect(201)["id"].as_i64().unwrap();
    let refs: Vec<_> = (0..10)
        .map(|_| json!({"type": "segment", "params": {"op": "member_of", "segment_id": wide}}))
        .collect();
    json!({"any": refs})
}

async fn membership_queries_stop_at_their_deadline(backend: Backend) {
    let app = TestApp::spawn_with_analytics(
        backend,
        AnalyticsSettings {
            timeout: Duration::from_millis(100),
            ..AnalyticsSettings::default()
        },
    )
    .await;
    populate(&app, &app.key, 5_000).await;
    let tree = costly(&app, &app.key).await;
    let segment = app
        .segment(json!({"name": "deep", "kind": "dynamic", "conditions": tree}))
        .await;
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/contacts/search".to_owned(),
            Some(json!({"conditions": tree})),
        ),
        (
            Method::POST,
            "/v1/contacts/search".to_owned(),
            Some(json!({"segment_id": segment})),
        ),
        (
            Method::POST,
            "/v1/segments/preview".to_owned(),
            Some(json!({"conditions": tree})),
        ),
        // Without Redis, a segment's members are read from SQL.
        (Method::GET, format!("/v1/segments/{segment}/members"), None),
    ] {
        let problem = app.call(method.clone(), &path, body).await.problem(504);
        assert_eq!(
            problem["type"], "https://segments.dev/problems/timeout",
            "{method} {path}: {problem}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains("100 ms"),
            "{problem}"
        );
    }
    // A segment too costly to count still reads (as its creation answered
    // above), without its count.
    let read = app
        .get(&format!("/v1/segments/{segment}"))
        .await
        .expect(200);
    assert_eq!(read["membership"]["source"], "uncounted", "{read}");
    assert_eq!(read["membership"]["count"], Value::Null);
    let listed = app.get("/v1/segments").await.expect(200);
    let deep = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == segment)
        .unwrap();
    assert_eq!(deep["membership"]["source"], "uncounted", "{deep}");
    // The connections the stopped queries ran on serve the next ones.
    let cheap = json!({"conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["other"]}}, "limit": 3});
    for _ in 0..10 {
        let found = app
            .post("/v1/contacts/search", cheap.clone())
            .await
            .expect(200);
        assert_eq!(found["items"].as_array().unwrap().len(), 3);
    }
    app.stop().await;
}

/// Ten slow searches of one workspace at once: it runs two, the others
/// wait their turn or are told to come back (429), and meanwhile another
/// workspace lists, writes and searches as if nothing ran.
async fn one_workspace_cannot_starve_another(backend: Backend) {
    let app = TestApp::spawn_with_analytics(
        backend,
        AnalyticsSettings {
            connections: 4,
            per_workspace: 2,
            timeout: Duration::from_secs(3),
        },
    )
    .await;
    populate(&app, &app.key, 20_000).await;
    let tree = costly(&app, &app.key).await;
    let other = app.other_workspace().await;
    populate(&app, &other, 1_000).await;

    // Set when the first slow search answers.
    let slow_done = Arc::new(AtomicBool::new(false));
    let slow = {
        let body = json!({"conditions": tree});
        let (app, slow_done) = (&app, slow_done.clone());
        async move {
            let replies = futures::future::join_all((0..10).map(|_| async {
                let reply = app
                    .call(Method::POST, "/v1/contacts/search", Some(body.clone()))
                    .await;
                slow_done.store(true, Ordering::SeqCst);
                reply
            }))
            .await;
            replies
                .into_iter()
                .map(|r| (r.status.as_u16(), r.content_type, r.body))
                .collect::<Vec<_>>()
        }
    };
    let others = {
        let (app, other, slow_done) = (&app, &other, slow_done.clone());
        async move {
            // Once the slow searches hold their connections.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut answers = Vec::new();
            for i in 0..20 {
                let (method, path, body) = match i % 3 {
                    0 => (Method::GET, "/v1/contacts?limit=10", None),
                    1 => (
                        Method::POST,
                        "/v1/contacts",
                        Some(json!({"name": format!("During {i}")})),
                    ),
                    _ => (
                        Method::POST,
                        "/v1/contacts/search",
                        Some(
                            json!({"conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["other"]}}, "limit": 5}),
                        ),
                    ),
                };
                let reply = app.call_as(other, method.clone(), path, body).await;
                answers.push((format!("{method} {path}"), reply.status.as_u16()));
            }
            (answers, slow_done.load(Ordering::SeqCst))
        }
    };
    let (slow, (answers, slow_finished_first)) = tokio::join!(slow, others);
    assert!(
        !slow_finished_first,
        "the other workspace's requests waited for a slow search to end"
    );
    for (request, status) in &answers {
        assert!((200..300).contains(status), "{request}: {status}");
    }
    let mut refused = 0;
    for (status, content_type, body) in &slow {
        // A search that finished within its deadline answers, as it should
        // (on a fast machine some do): the point is that no more than the
        // workspace's share ran at once, and that the others were refused.
        if *status == 200 {
            assert!(body["items"].is_array(), "{body}");
            continue;
        }
        assert!(matches!(status, 504 | 429), "{status} {body}");
        assert_eq!(content_type, "application/problem+json");
        refused += usize::from(*status == 429);
    }
    assert!(refused > 0, "every slow search got a connection: {slow:?}");
    app.stop().await;
}

on_both_backends!(
    membership_queries_stop_at_their_deadline,
    one_workspace_cannot_starve_another,
);
