//! The drift check, alone: sets damaged behind the materializer's back are
//! found and repaired page by page, without a rebuild; a check spread over
//! many reconciler ticks resumes where it stopped; and a repair never undoes
//! a write that races it. Nothing else repairs sets here: no reconciler
//! runs, and the repairs are called directly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng;
use redis::AsyncCommands;
use segments_conditions::SegmentSql;
use segments_domain::{ContactId, SegmentId, WorkspaceId};
use segments_tests::{Backend, TestApp, on_both_backends};
use segments_worker::{Materializer, MaterializerSettings};
use serde_json::json;

use crate::{REDIS, converged, differences};

/// Ids no contact has: what a lost SREM of a deleted contact leaves behind.
const GHOSTS: [i64; 3] = [900_000_001, 900_000_002, 900_000_003];

/// `n` contacts, every `every`th tagged `vip`; their ids in order.
async fn contacts(app: &TestApp, n: usize, every: usize) -> Vec<i64> {
    let batch: Vec<_> = (0..n)
        .map(|i| {
            let tags = if i % every == 0 { vec!["vip"] } else { vec![] };
            json!({"external_id": format!("c{i}"), "tags": tags})
        })
        .collect();
    let reply = app
        .post("/v1/contacts/bulk-upsert", json!({"contacts": batch}))
        .await
        .expect(200);
    reply["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect()
}

async fn vip_segment(app: &TestApp) -> SegmentId {
    SegmentId(
        app.segment(json!({"name": "vip", "kind": "dynamic",
            "conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}}))
            .await,
    )
}

/// A materializer over the app's store and Redis prefix, checking `batch`
/// ids per page.
async fn checker(app: &TestApp, batch: usize, slice: Duration) -> Materializer {
    let materialized = app.materialized.as_ref().unwrap();
    Materializer::connect(
        app.store.clone(),
        REDIS,
        MaterializerSettings {
            prefix: materialized.prefix.clone(),
            drift_batch: batch,
            drift_slice: slice,
            drift_every: Duration::from_secs(3_600),
            ..MaterializerSettings::default()
        },
    )
    .await
    .unwrap()
}

/// Takes members out of the set and puts non-members and ghosts in, behind
/// the materializer's back; returns how many members it moved.
async fn damage(
    m: &Materializer,
    ws: WorkspaceId,
    segment: SegmentId,
    out: &[i64],
    inn: &[i64],
) -> u64 {
    let mut conn = m.redis();
    let key = m.keys().members(ws, segment);
    if !out.is_empty() {
        let _: i64 = conn.srem(&key, out).await.unwrap();
    }
    let _: i64 = conn.sadd(&key, [inn, &GHOSTS[..]].concat()).await.unwrap();
    (out.len() + inn.len() + GHOSTS.len()) as u64
}

async fn built_at(m: &Materializer, ws: WorkspaceId, segment: SegmentId) -> String {
    let mut conn = m.redis();
    conn.hget(m.keys().meta(ws, segment), "built_at")
        .await
        .unwrap()
}

async fn repair_events(m: &Materializer, ws: WorkspaceId) -> usize {
    let mut conn = m.redis();
    let entries: redis::streams::StreamRangeReply =
        conn.xrange_all(m.keys().events(ws)).await.unwrap();
    entries
        .ids
        .iter()
        .filter(|e| e.get::<String>("cause").as_deref() == Some("repair"))
        .count()
}

async fn drift_is_found_and_repaired_without_a_rebuild(backend: Backend) {
    let app = TestApp::spawn_materialized(backend, REDIS, 1).await;
    let segment = vip_segment(&app).await;
    let ids = contacts(&app, 600, 3).await;
    converged(&app, Duration::from_secs(30)).await;
    let ws = app.workspace_id().await;
    let m = checker(&app, 50, Duration::from_secs(60)).await;
    let before = built_at(&m, ws, segment).await;

    // Members lost from several pages, non-members and ghosts added. One
    // lost member's decision stays recorded at its current version, as when
    // Redis kept the versions hash but lost the SADD.
    let lost: Vec<i64> = ids.iter().step_by(3).step_by(20).copied().collect();
    let intruders = [ids[1], ids[301], ids[599]];
    let damaged = damage(&m, ws, segment, &lost, &intruders).await;
    let version = app
        .store
        .contact_versions(&[ContactId(lost[0])])
        .await
        .unwrap()[&ContactId(lost[0])];
    let mut conn = m.redis();
    let _: i64 = conn
        .hset(m.keys().versions(ws, segment), lost[0], version.seq)
        .await
        .unwrap();

    let drift = m.drift(ws, segment).await.unwrap();
    assert_eq!(
        (drift.missing, drift.extra),
        (lost.len() as u64, (intruders.len() + GHOSTS.len()) as u64)
    );
    assert!(!differences(&app).await.is_empty());

    let report = m.reconcile().await.unwrap();
    assert_eq!(report.repaired_members, damaged, "{report:?}");
    assert_eq!(report.repaired_segments, 1);
    assert_eq!(report.drift_finished.as_ref().map(|f| f.checked), Some(1));
    assert!(differences(&app).await.is_empty());
    assert!(m.drift(ws, segment).await.unwrap().is_clean());
    // Repaired in place, each move an event of its own.
    assert_eq!(built_at(&m, ws, segment).await, before);
    assert_eq!(repair_events(&m, ws).await as u64, damaged);
    let status = m.status(ws, segment).await.unwrap().unwrap();
    assert_eq!(status.repairs, damaged);
    assert_eq!(status.count, 200);
    app.stop().await;
}

async fn a_drift_check_spread_over_ticks_resumes_where_it_stopped(backend: Backend) {
    let app = TestApp::spawn_materialized(backend, REDIS, 1).await;
    let first = vip_segment(&app).await;
    let second = vip_segment(&app).await;
    // 600 members a segment: more than Redis keeps as a compact intset,
    // which SSCAN would return whole.
    let ids = contacts(&app, 1_200, 2).await;
    converged(&app, Duration::from_secs(30)).await;
    let ws = app.workspace_id().await;
    // No time at all per tick: every tick checks one segment's SQL side, or
    // one page of a set's own scan, and saves its place.
    let m = checker(&app, 20, Duration::ZERO).await;
    let lost: Vec<i64> = ids.iter().step_by(2).step_by(15).copied().collect();
    let mut damaged = damage(&m, ws, first, &lost, &[ids[1]]).await;
    damaged += damage(&m, ws, second, &lost[..2], &[]).await;

    let mut ticks = 0;
    let mut repaired = 0;
    let finished = loop {
        ticks += 1;
        assert!(ticks < 200, "the check never finished");
        let report = m
            .reconcile_exclusively(Duration::from_secs(30))
            .await
            .unwrap()
            .expect("no other reconciler");
        repaired += report.repaired_members;
        if let Some(finished) = report.drift_finished {
            break finished;
        }
    };
    // The sets hold intruders, so each is scanned too: ~30 pages of 20.
    assert!(ticks >= 20, "finished in {ticks} ticks");
    assert_eq!(repaired, damaged);
    assert_eq!(finished.repaired_members, damaged);
    assert_eq!((finished.checked, finished.repaired_segments), (2, 2));
    assert!(differences(&app).await.is_empty());
    // The next pass is not due for an hour: ticks leave the sets alone.
    let _ = damage(&m, ws, first, &lost[..1], &[]).await;
    let report = m
        .reconcile_exclusively(Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((report.drift_checked, report.repaired_members), (0, 0));
    app.stop().await;
}

/// Writers flip tags as fast as they can while the set is damaged and
/// repaired over and over; once the damage stops and the repairs that
/// follow it have run, every set equals SQL. (Races this loose rarely hit
/// the window between a repair's read and its script: the test below makes
/// that interleaving happen, and fails without the script's guards.)
async fn repairs_never_undo_writes_that_race_them(backend: Backend) {
    let app = Arc::new(TestApp::spawn_materialized(backend, REDIS, 1).await);
    let segment = vip_segment(&app).await;
    let ids = Arc::new(contacts(&app, 120, 2).await);
    converged(&app, Duration::from_secs(30)).await;
    let ws = app.workspace_id().await;
    let m = Arc::new(checker(&app, 16, Duration::from_secs(60)).await);
    let writing = Arc::new(AtomicBool::new(true));
    let damaging = Arc::new(AtomicBool::new(true));
    let writes = Arc::new(AtomicUsize::new(0));

    let writers: Vec<_> = (0..3)
        .map(|_| {
            let (app, ids, writing, writes) =
                (app.clone(), ids.clone(), writing.clone(), writes.clone());
            tokio::spawn(async move {
                while writing.load(Ordering::Relaxed) {
                    let (id, add) = {
                        let mut rng = rand::rng();
                        (ids[rng.random_range(0..ids.len())], rng.random_bool(0.5))
                    };
                    let path = if add {
                        format!("/v1/contacts/{id}/tags")
                    } else {
                        format!("/v1/contacts/{id}/tags/remove")
                    };
                    app.post(&path, json!({"tags": ["vip"]})).await.expect(200);
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let damager = {
        let (m, ids, damaging) = (m.clone(), ids.clone(), damaging.clone());
        tokio::spawn(async move {
            while damaging.load(Ordering::Relaxed) {
                let picks: Vec<i64> = {
                    let mut rng = rand::rng();
                    (0..4)
                        .map(|_| ids[rng.random_range(0..ids.len())])
                        .collect()
                };
                let mut conn = m.redis();
                let key = m.keys().members(ws, segment);
                let _: i64 = conn.srem(&key, &picks[..2]).await.unwrap();
                let _: i64 = conn.sadd(&key, &picks[2..]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Repairs go on until enough writes have raced them, however fast the
    // machine: a number of writes, not of seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let repair_until = |target: usize| {
        let (m, writes) = (m.clone(), writes.clone());
        async move {
            let (mut repaired, mut rounds) = (0, 0);
            while rounds < 5 || writes.load(Ordering::Relaxed) < target {
                assert!(std::time::Instant::now() < deadline, "writers stalled");
                repaired += m.repair(ws, segment).await.unwrap().missing;
                rounds += 1;
            }
            repaired
        }
    };
    let repaired = repair_until(300).await;
    damaging.store(false, Ordering::Relaxed);
    damager.await.unwrap();
    // The damage has stopped; repairs go on beside the writers.
    repair_until(writes.load(Ordering::Relaxed) + 150).await;
    writing.store(false, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let writes = writes.load(Ordering::Relaxed);
    assert!(repaired > 0, "the damage was never repaired");
    let diff = differences(&app).await;
    assert!(diff.is_empty(), "after {writes} writes: {diff:?}");
    Arc::into_inner(app).unwrap().stop().await;
}

/// The interleaving the guard exists for, made to happen: a repair decided
/// from SQL, then a write that changes the contact and applies itself, then
/// the repair — which must not undo the write. And a repair decided before
/// a rebuild swapped in must not land on the new set.
async fn a_repair_decided_before_a_write_or_a_rebuild_never_lands(backend: Backend) {
    let app = TestApp::spawn_materialized(backend, REDIS, 1).await;
    let segment = vip_segment(&app).await;
    let ids = contacts(&app, 10, 2).await;
    converged(&app, Duration::from_secs(30)).await;
    let ws = app.workspace_id().await;
    let m = checker(&app, 50, Duration::from_secs(60)).await;
    let catalog = app.store.catalog(ws).await.unwrap();
    let ctx = catalog.sql_context(app.store.sql_backend(), segments_domain::Timestamp::now());
    let condition = catalog.segments.membership_sql(segment, &ctx).unwrap();
    let member = |id: i64| {
        let m = &m;
        async move {
            let mut conn = m.redis();
            let held: bool = conn
                .sismember(m.keys().members(ws, segment), id)
                .await
                .unwrap();
            held
        }
    };

    // ids[0] is a member; the set loses it.
    let (lost, intruder) = (ids[0], ids[1]);
    let _ = damage(&m, ws, segment, &[lost], &[intruder]).await;
    let identity = m.build_identity(ws, segment).await.unwrap().unwrap();
    let stale = app
        .store
        .membership_truth(ws, condition.clone(), &[lost])
        .await
        .unwrap();
    assert_eq!(stale[0].member, Some(true));
    // The contact leaves the segment, and the write applies that itself.
    app.post(
        &format!("/v1/contacts/{lost}/tags/remove"),
        json!({"tags": ["vip"]}),
    )
    .await
    .expect(200);
    assert_eq!(
        m.apply_truths(ws, segment, &identity, &stale, "repair")
            .await
            .unwrap(),
        Some(0)
    );
    assert!(!member(lost).await, "the repair undid the write");

    // Decided from current data, a repair lands.
    let fresh = app
        .store
        .membership_truth(ws, condition.clone(), &[intruder, GHOSTS[0]])
        .await
        .unwrap();
    assert_eq!((fresh[0].member, fresh[1].member), (Some(false), None));
    let ghost_only = &fresh[1..];
    assert_eq!(
        m.apply_truths(ws, segment, &identity, ghost_only, "repair")
            .await
            .unwrap(),
        Some(1)
    );

    // Decided before a rebuild, it does not.
    m.rebuild(ws, segment).await.unwrap();
    let _ = damage(&m, ws, segment, &[], &[intruder]).await;
    assert_eq!(
        m.apply_truths(ws, segment, &identity, &fresh[..1], "repair")
            .await
            .unwrap(),
        None
    );
    assert!(member(intruder).await);
    app.stop().await;
}

on_both_backends!(
    a_repair_decided_before_a_write_or_a_rebuild_never_lands,
    drift_is_found_and_repaired_without_a_rebuild,
    a_drift_check_spread_over_ticks_resumes_where_it_stopped,
    repairs_never_undo_writes_that_race_them,
);
