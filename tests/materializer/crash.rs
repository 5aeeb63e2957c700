//! A worker that dies in the middle of a job: the job is handed to the next
//! worker, without the reconciler.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_redis::RedisStorage;
use segments_domain::SegmentId;
use segments_tests::{Backend, TestApp, eventually, on_both_backends};
use segments_worker::{Envelope, WorkerSettings};
use serde_json::json;
use tokio::sync::{Notify, watch};

use crate::{REDIS, converged};

/// Takes a job, says so, and never finishes it.
async fn hang(_job: Envelope, started: Data<Arc<Notify>>) -> Result<(), BoxDynError> {
    started.notify_one();
    std::future::pending::<()>().await;
    Ok(())
}

async fn a_job_whose_worker_died_is_run_by_the_next_worker(backend: Backend) {
    // No worker yet: the rebuild job of the new segment waits in the queue.
    let app = TestApp::spawn_materialized(backend, REDIS, 0).await;
    app.contact(json!({"name": "a", "tags": ["vip"]})).await;
    let segment = app
        .post(
            "/v1/segments",
            json!({"name": "vip", "kind": "dynamic", "conditions":
                {"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}}),
        )
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let m = app.materialized.as_ref().unwrap().materializer.clone();
    let heartbeat = Duration::from_secs(1);

    // A worker takes the job, then dies without a word: no acknowledgement,
    // no heartbeat, the job left in its in-flight set.
    let started = Arc::new(Notify::new());
    let storage = RedisStorage::<Envelope>::new(m.queue_redis()).with_config(
        segments_worker::jobs::queue_config(&m.keys().queue(), heartbeat),
    );
    let doomed = WorkerBuilder::new(format!("doomed-{}", std::process::id()))
        .backend(storage)
        .data(started.clone())
        .build(hang);
    let doomed = tokio::spawn(async move { doomed.run().await });
    tokio::time::timeout(Duration::from_secs(20), started.notified())
        .await
        .expect("the doomed worker never took the job");
    doomed.abort();
    let ws = app.workspace_id().await;
    assert!(m.status(ws, SegmentId(segment)).await.unwrap().is_none());

    // The next worker (the reconciler off, as in every test here) notices
    // the silent one and runs its job.
    let (stop, rx) = watch::channel(false);
    let settings = WorkerSettings {
        concurrency: 2,
        reconcile_schedule: "0 0 0 1 1 * 2099".into(),
        heartbeat,
        ..WorkerSettings::default()
    };
    let next = tokio::spawn(segments_worker::run(m.clone(), settings, async move {
        let mut rx = rx;
        let _ = rx.wait_for(|s| *s).await;
    }));
    eventually(Duration::from_secs(30), || async {
        match m.status(ws, SegmentId(segment)).await.unwrap() {
            Some(_) => Ok(()),
            None => Err("the dead worker's job was never run again".to_owned()),
        }
    })
    .await;
    converged(&app, Duration::from_secs(10)).await;
    let _ = stop.send(true);
    let _ = next.await;
    app.stop().await;
}

on_both_backends!(a_job_whose_worker_died_is_run_by_the_next_worker);
