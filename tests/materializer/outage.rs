//! Redis goes away: the API keeps accepting writes and says Redis is
//! degraded; once Redis is back, the workers notice by themselves and bring
//! every set up to date within seconds — the scheduled reconciler stays off.
//! Redis restarted empty: every set is rebuilt at once.

use std::time::Duration;

use segments_tests::{Backend, RedisServer, TestApp, on_both_backends};
use serde_json::json;

use crate::converged;

async fn no_change_is_lost_while_redis_is_down(backend: Backend) {
    let mut redis = RedisServer::start();
    let app = TestApp::spawn_materialized(backend, &redis.url(), 1).await;
    let vip = app.segment(json!({"name": "vip", "kind": "dynamic", "conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}})).await;
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
    // The jobs for those writes were never enqueued: the workers see Redis
    // come back and sweep the change log themselves.
    let back = std::time::Instant::now();
    converged(&app, Duration::from_secs(10)).await;
    eprintln!("converged {:?} after redis came back", back.elapsed());
    assert_eq!(app.get("/readyz").await.expect(200)["status"], "ok");
    let seg = app.get(&format!("/v1/segments/{vip}")).await.expect(200);
    assert_eq!(seg["membership"]["source"], "materialized", "{seg}");
    app.stop().await;
    drop(redis);
}

/// Redis comes back with nothing (no persistence, a failover to an empty
/// replica): every set, its metadata and the job queue are gone. The
/// workers notice the missing epoch marker and rebuild every segment,
/// with writes going on, reconciler off.
async fn redis_restarted_empty_is_rebuilt_at_once(backend: Backend) {
    let mut redis = RedisServer::start();
    let app = TestApp::spawn_materialized(backend, &redis.url(), 2).await;
    let vip = json!({"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}});
    app.post(
        "/v1/segments",
        json!({"name": "vip", "kind": "dynamic", "conditions": vip}),
    )
    .await
    .expect(201);
    let statik = app.segment(json!({"name": "hand", "kind": "static"})).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let tags = if i % 2 == 0 {
            json!(["vip"])
        } else {
            json!([])
        };
        ids.push(
            app.contact(json!({"tags": tags})).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    app.post(
        &format!("/v1/segments/{statik}/members"),
        json!({"contact_ids": &ids[..5]}),
    )
    .await
    .expect(200);
    converged(&app, Duration::from_secs(30)).await;

    redis.wipe();
    // Writes while it is down, and right after it is back, empty.
    app.contact(json!({"tags": ["vip"]})).await;
    redis.resume();
    app.contact(json!({"tags": ["vip"]})).await;
    app.post(
        &format!("/v1/contacts/{}/tags/remove", ids[0]),
        json!({"tags": ["vip"]}),
    )
    .await
    .expect(200);
    let back = std::time::Instant::now();
    converged(&app, Duration::from_secs(10)).await;
    eprintln!("converged {:?} after redis came back empty", back.elapsed());
    app.stop().await;
    drop(redis);
}

on_both_backends!(
    no_change_is_lost_while_redis_is_down,
    redis_restarted_empty_is_rebuilt_at_once,
);
