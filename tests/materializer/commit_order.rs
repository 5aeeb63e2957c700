//! Commit order, not the order sequence numbers were handed out, decides
//! what a rebuild saw. A bulk upsert takes its change numbers while it runs
//! and commits a second later; a single write that starts after it commits
//! before it with a higher number; a rebuild in between reads the database
//! without the bulk. The bulk's changes must still reach the new set — with
//! the reconciler off.

use std::time::{Duration, Instant};

use segments_tests::{Backend, TestApp, on_both_backends};
use serde_json::{Value, json};

use crate::{REDIS, converged};

const CONTACTS: usize = 10_000;

fn everyone(opted_in: bool) -> Value {
    let contacts: Vec<Value> = (0..CONTACTS)
        .map(|i| json!({"external_id": format!("c{i}"), "opted_in": opted_in}))
        .collect();
    json!({ "contacts": contacts })
}

async fn writes_that_commit_while_a_rebuild_runs_are_not_lost(backend: Backend) {
    let app = TestApp::spawn_materialized(backend, REDIS, 2).await;
    let started = Instant::now();
    app.post("/v1/contacts/bulk-upsert", everyone(false))
        .await
        .expect(200);
    // How long a bulk write of every contact takes here: the rebuild below
    // starts halfway through the next one.
    let halfway = started.elapsed() / 2;
    let other = app.contact(json!({"name": "other"})).await["id"]
        .as_i64()
        .unwrap();
    let segment = app
        .post(
            "/v1/segments",
            json!({"name": "opted in", "kind": "dynamic",
                   "conditions": {"type": "opt_in", "params": {"opted_in": true}}}),
        )
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    converged(&app, Duration::from_secs(60)).await;

    for round in 0..3 {
        let opted_in = round % 2 == 0;
        let bulk = app.post("/v1/contacts/bulk-upsert", everyone(opted_in));
        let meanwhile = async {
            tokio::time::sleep(halfway).await;
            // Takes a later change number than the bulk's first chunks and
            // commits first.
            app.patch(
                &format!("/v1/contacts/{other}"),
                json!({"opted_in": opted_in}),
            )
            .await
            .expect(200);
            app.call(
                reqwest::Method::POST,
                &format!("/v1/segments/{segment}/rebuild"),
                None,
            )
            .await
            .expect(202);
        };
        let (written, ()) = tokio::join!(bulk, meanwhile);
        written.expect(200);
        converged(&app, Duration::from_secs(30)).await;
    }
    app.stop().await;
}

on_both_backends!(writes_that_commit_while_a_rebuild_runs_are_not_lost);
