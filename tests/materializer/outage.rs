//! Redis goes away: the API keeps accepting writes and says Redis is
//! degraded; once Redis is back, the reconciler's sweep of the change log
//! brings every set up to date — no committed change is lost.

use std::time::Duration;

use segments_tests::{Backend, RedisServer, TestApp, on_both_backends};
use serde_json::json;

use crate::converged;

async fn no_change_is_lost_while_redis_is_down(backend: Backend) {
    let mut redis = RedisServer::start();
    let app = TestApp::spawn_materialized(backend, &redis.url(), 1).await;
    let vip = app
        .post("/v1/segments", json!({"name": "vip", "kind": "dynamic", "conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}}))
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let first = app.contact(json!({"tags": ["vip"]})).await["id"]
        .as_i64()
        .unwrap();
    converged(&app, Duration::from_secs(30)).await;

    redis.halt();
    // Writes are accepted while Redis is down: the database is the source of truth.
    app.contact(json!({"tags": ["vip"]})).await;
    app.contact(json!({"tags": ["vip"]})).await;
    app.post(
        &format!("/v1/contacts/{first}/tags/remove"),
        json!({"tags": ["vip"]}),
    )
    .await
    .expect(200);
    let ready = app.get("/readyz").await.expect(200);
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert!(ready["redis"].as_str().unwrap().starts_with("degraded"));
    // Counts fall back to SQL rather than failing.
    let seg = app.get(&format!("/v1/segments/{vip}")).await.expect(200);
    assert_eq!(
        (
            seg["member_count"].clone(),
            seg["membership"]["source"].clone()
        ),
        (json!(2), json!("sql"))
    );

    redis.resume();
    let m = app.materialized.as_ref().unwrap().materializer.clone();
    // The jobs for those writes were never enqueued; the sweep finds the changes.
    let report = m.reconcile().await.unwrap();
    assert!(report.swept_changes >= 3, "{report:?}");
    assert_eq!(
        report.repaired_members, 0,
        "the sweep, not drift repair, must have applied them: {report:?}"
    );
    converged(&app, Duration::from_secs(30)).await;
    assert_eq!(app.get("/readyz").await.expect(200)["status"], "ok");
    app.stop().await;
    drop(redis);
}

on_both_backends!(no_change_is_lost_while_redis_is_down);
