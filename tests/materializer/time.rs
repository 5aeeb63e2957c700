//! Time alone moving members, with no write at all: a contact whose first
//! contact turns 30 days old leaves "first contacted within the last 30
//! days" (and enters "more than 30 days ago"), one first contacted at an
//! instant still to come enters when it comes — at the next reconciler
//! tick, which re-decides only the contacts time can have changed, without
//! rebuilding either segment.

use std::time::Duration;

use chrono::Utc;
use redis::AsyncCommands;
use segments_domain::{ContactId, SegmentId};
use segments_tests::{Backend, TestApp, on_both_backends};
use serde_json::json;

use crate::{REDIS, converged};

async fn first_contacted(app: &TestApp, at: chrono::DateTime<Utc>) -> ContactId {
    let body =
        json!({"first_contacted_at": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)});
    ContactId(app.contact(body).await["id"].as_i64().unwrap())
}

async fn time_moves_members_without_a_rebuild(backend: Backend) {
    let app = TestApp::spawn_materialized(backend, REDIS, 1).await;
    let segment = |op: &str| {
        json!({"name": op, "kind": "dynamic", "conditions":
            {"type": "first_contacted", "params": {"op": op, "days": 30}}})
    };
    let recent = SegmentId(app.segment(segment("within_last_days")).await);
    let old = SegmentId(app.segment(segment("more_than_days_ago")).await);
    let now = Utc::now();
    let month = chrono::Duration::days(30);
    // Margins wide enough for a loaded machine to build both sets first.
    let leaving = first_contacted(&app, now - month + chrono::Duration::seconds(14)).await;
    let arriving = first_contacted(&app, now + chrono::Duration::seconds(12)).await;
    let staying = first_contacted(&app, now - chrono::Duration::days(10)).await;
    let gone = first_contacted(&app, now - chrono::Duration::days(40)).await;
    converged(&app, Duration::from_secs(30)).await;
    let m = app.materialized.as_ref().unwrap().materializer.clone();
    let ws = app.workspace_id().await;
    assert_eq!(
        m.all_members(ws, recent).await.unwrap(),
        vec![leaving, staying]
    );
    assert_eq!(m.all_members(ws, old).await.unwrap(), vec![gone]);
    let mut conn = m.redis();
    let built = |segment| {
        let (m, mut conn) = (m.clone(), conn.clone());
        async move {
            let at: String = conn
                .hget(m.keys().meta(ws, segment), "built_at")
                .await
                .unwrap();
            at
        }
    };
    let before = (built(recent).await, built(old).await);

    // Until both instants have passed.
    let wait = (now + chrono::Duration::seconds(15) - Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait).await;
    let report = m
        .reconcile_exclusively(Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (report.time_updates, report.time_rebuilds, report.time_moved),
        (2, 0, 3),
        "{report:?}"
    );
    assert_eq!(
        m.all_members(ws, recent).await.unwrap(),
        vec![arriving, staying]
    );
    assert_eq!(m.all_members(ws, old).await.unwrap(), vec![leaving, gone]);
    assert_eq!((built(recent).await, built(old).await), before);
    let events: redis::streams::StreamRangeReply =
        conn.xrange_all(m.keys().events(ws)).await.unwrap();
    let by_time: Vec<(String, String)> = events
        .ids
        .iter()
        .filter(|e| e.get::<String>("cause").as_deref() == Some("time"))
        .map(|e| (e.get("contact").unwrap(), e.get("change").unwrap()))
        .collect();
    assert_eq!(by_time.len(), 3, "{by_time:?}");
    assert!(by_time.contains(&(arriving.0.to_string(), "entered".into())));
    assert!(by_time.contains(&(leaving.0.to_string(), "exited".into())));
    // Nothing moved since: the next tick moves no one.
    let report = m
        .reconcile_exclusively(Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((report.time_updates, report.time_moved), (2, 0));
    converged(&app, Duration::from_secs(5)).await;
    app.stop().await;
}

on_both_backends!(time_moves_members_without_a_rebuild);
