use std::time::Duration;

use reqwest::Method;
use segments_domain::{ContactId, SegmentId, WorkspaceId};
use segments_tests::{Backend, TestApp, on_both_backends};
use serde_json::{Value, json};

use crate::{REDIS, converged};

async fn dynamic(app: &TestApp, conditions: Value) -> i64 {
    app.post(
        "/v1/segments",
        json!({"name": "s", "kind": "dynamic", "conditions": conditions}),
    )
    .await
    .expect(201)["id"]
        .as_i64()
        .unwrap()
}

async fn workspace(app: &TestApp) -> WorkspaceId {
    app.workspace_id().await
}

async fn sets_follow_every_kind_of_write(backend: Backend) {
    let app = TestApp::spawn_materialized(backend, REDIS, 1).await;
    app.attribute("plan", "text").await;
    let vip = dynamic(
        &app,
        json!({"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}),
    )
    .await;
    let gold = dynamic(
        &app,
        json!({"type": "attribute", "params": {"key": "plan", "op": "eq", "value": "gold"}}),
    )
    .await;
    let both = dynamic(
        &app,
        json!({"all": [
            {"type": "segment", "params": {"op": "member_of", "segment_id": vip}},
            {"type": "segment", "params": {"op": "member_of", "segment_id": gold}}
        ]}),
    )
    .await;
    let hand = app.segment(json!({"name": "hand", "kind": "static"})).await;
    converged(&app, Duration::from_secs(30)).await;

    let a = app
        .contact(json!({"name": "a", "tags": ["vip"], "attributes": {"plan": "gold"}}))
        .await["id"]
        .as_i64()
        .unwrap();
    let b = app.contact(json!({"name": "b", "tags": ["VIP"]})).await["id"]
        .as_i64()
        .unwrap();
    app.post(
        "/v1/contacts/bulk-upsert",
        json!({"contacts": [{"external_id": "c", "attributes": {"plan": "gold"}}]}),
    )
    .await
    .expect(200);
    app.post(
        &format!("/v1/segments/{hand}/members"),
        json!({"contact_ids": [a, b]}),
    )
    .await
    .expect(200);
    converged(&app, Duration::from_secs(30)).await;
    let m = &app.materialized.as_ref().unwrap().materializer;
    let ws = workspace(&app).await;
    assert_eq!(
        m.all_members(ws, SegmentId(both)).await.unwrap(),
        vec![ContactId(a)]
    );

    app.put(
        &format!("/v1/contacts/{b}/attributes/plan"),
        json!({"value": "gold"}),
    )
    .await
    .expect(200);
    app.delete(&format!("/v1/contacts/{a}/tags/vip"))
        .await
        .expect(200);
    app.post(
        "/v1/tags/apply",
        json!({"contact_ids": [a], "tags": ["vip"]}),
    )
    .await
    .expect(200);
    app.post(
        &format!("/v1/segments/{hand}/members/remove"),
        json!({"contact_ids": [a]}),
    )
    .await
    .expect(200);
    app.delete(&format!("/v1/contacts/{b}")).await.expect(204);
    converged(&app, Duration::from_secs(30)).await;
    // Replacing conditions rebuilds the segment and those that refer to it.
    app.patch(
        &format!("/v1/segments/{vip}"),
        json!({"conditions": {"type": "opt_in", "params": {"opted_in": false}}}),
    )
    .await
    .expect(200);
    converged(&app, Duration::from_secs(30)).await;
    // Renaming a tag rebuilds the segments that read tags.
    let tags = app.get("/v1/tags").await.expect(200);
    let tag = tags["items"][0]["id"].as_i64().unwrap();
    app.delete(&format!("/v1/tags/{tag}")).await.expect(204);
    converged(&app, Duration::from_secs(30)).await;

    // Counts and member lists now come from the sets.
    let seg = app.get(&format!("/v1/segments/{gold}")).await.expect(200);
    assert_eq!(seg["membership"]["source"], "materialized");
    // Instants are written one way throughout the API: RFC 3339 in UTC, `Z`.
    let built_at = seg["membership"]["built_at"].as_str().unwrap_or_default();
    assert!(
        built_at.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(built_at).is_ok(),
        "{seg}"
    );
    let members = app
        .get(&format!("/v1/segments/{gold}/members?limit=100"))
        .await
        .expect(200);
    assert_eq!(
        members["items"].as_array().unwrap().len() as u64,
        seg["member_count"].as_u64().unwrap()
    );

    // Deleting a segment deletes its keys.
    app.delete(&format!("/v1/segments/{both}"))
        .await
        .expect(204);
    let mut conn = m.redis();
    let exists: bool = redis::AsyncCommands::exists(&mut conn, m.keys().meta(ws, SegmentId(both)))
        .await
        .unwrap();
    assert!(!exists);
    app.stop().await;
}

async fn snapshots_events_and_a_contacts_segments(backend: Backend) {
    let app = TestApp::spawn_materialized(backend, REDIS, 1).await;
    let vip = dynamic(
        &app,
        json!({"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}),
    )
    .await;
    // Built first, so the contact enters by an incremental update (a full
    // rebuild records one `rebuilt` event, not one per member).
    converged(&app, Duration::from_secs(30)).await;
    let id = app.contact(json!({"tags": ["vip"]})).await["id"]
        .as_i64()
        .unwrap();
    converged(&app, Duration::from_secs(30)).await;

    let snapshot = app
        .post(
            &format!("/v1/segments/{vip}/snapshots"),
            json!({"ttl_seconds": 120}),
        )
        .await
        .expect(201);
    assert_eq!(snapshot["count"], 1);
    // Membership moves on; the snapshot does not.
    app.post(
        &format!("/v1/contacts/{id}/tags/remove"),
        json!({"tags": ["vip"]}),
    )
    .await
    .expect(200);
    converged(&app, Duration::from_secs(30)).await;
    let m = &app.materialized.as_ref().unwrap().materializer;
    let mut conn = m.redis();
    let frozen: Vec<i64> =
        redis::AsyncCommands::smembers(&mut conn, snapshot["key"].as_str().unwrap())
            .await
            .unwrap();
    assert_eq!(frozen, vec![id]);
    let ttl: i64 = redis::AsyncCommands::ttl(&mut conn, snapshot["key"].as_str().unwrap())
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 120);

    // Every change is in the workspace's event stream.
    let ws = workspace(&app).await;
    let events: Vec<redis::Value> = redis::cmd("XRANGE")
        .arg(m.keys().events(ws))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let text = format!("{events:?}");
    assert!(
        text.contains("entered") && text.contains("exited"),
        "{text}"
    );

    app.post(&format!("/v1/contacts/{id}/tags"), json!({"tags": ["vip"]}))
        .await
        .expect(200);
    converged(&app, Duration::from_secs(30)).await;
    let mine = app
        .get(&format!("/v1/contacts/{id}/segments"))
        .await
        .expect(200);
    assert_eq!(mine["items"][0]["id"], vip);
    app.call(Method::POST, &format!("/v1/segments/{vip}/rebuild"), None)
        .await
        .expect(202);
    converged(&app, Duration::from_secs(30)).await;
    app.stop().await;
}

async fn a_stale_evaluation_never_overwrites_a_newer_one(backend: Backend) {
    let app = TestApp::spawn_materialized(backend, REDIS, 1).await;
    let vip = SegmentId(
        dynamic(
            &app,
            json!({"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}),
        )
        .await,
    );
    let id = ContactId(
        app.contact(json!({"tags": ["vip"]})).await["id"]
            .as_i64()
            .unwrap(),
    );
    converged(&app, Duration::from_secs(30)).await;
    let ws = workspace(&app).await;
    let stale_version = app.store.contact_versions(&[id]).await.unwrap()[&id];
    app.post(
        &format!("/v1/contacts/{}/tags/remove", id.0),
        json!({"tags": ["vip"]}),
    )
    .await
    .expect(200);
    converged(&app, Duration::from_secs(30)).await;
    let m = &app.materialized.as_ref().unwrap().materializer;
    // A delayed job that evaluated the contact before its last write arrives now.
    m.apply_evaluation(ws, id, stale_version, &[(vip, true)], "stale")
        .await
        .unwrap();
    assert_eq!(
        m.all_members(ws, vip).await.unwrap(),
        Vec::<ContactId>::new()
    );
    // Duplicated jobs of the latest state change nothing either.
    let current = app.store.contact_versions(&[id]).await.unwrap()[&id];
    m.apply_evaluation(ws, id, current, &[(vip, false)], "duplicate")
        .await
        .unwrap();
    converged(&app, Duration::from_secs(30)).await;
    app.stop().await;
}

async fn finished_jobs_are_vacuumed(backend: Backend) {
    let app = TestApp::spawn_materialized(backend, REDIS, 1).await;
    dynamic(
        &app,
        json!({"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}),
    )
    .await;
    for _ in 0..5 {
        app.contact(json!({"tags": ["vip"]})).await;
    }
    converged(&app, Duration::from_secs(30)).await;
    let m = &app.materialized.as_ref().unwrap().materializer;
    let queue = m.keys().queue();
    // Every job is done once the sets have converged, give or take its acknowledgement.
    segments_tests::eventually(Duration::from_secs(30), || async {
        m.vacuum_jobs().await.unwrap();
        let mut conn = m.redis();
        let left: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{queue}:meta:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("finished jobs were not vacuumed: {left:?}"))
        }
    })
    .await;
    app.stop().await;
}

async fn jobs_rebuilds_and_member_changes_are_counted(backend: Backend) {
    let app = TestApp::spawn_materialized(backend, REDIS, 1).await;
    let before = app.metrics().await;
    let vip = dynamic(
        &app,
        json!({"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}),
    )
    .await;
    converged(&app, Duration::from_secs(30)).await;
    let id = app.contact(json!({"name": "a", "tags": ["vip"]})).await["id"]
        .as_i64()
        .unwrap();
    // Seen entering before the tag goes: a job covering both writes would
    // see neither change.
    converged(&app, Duration::from_secs(30)).await;
    app.delete(&format!("/v1/contacts/{id}/tags/vip"))
        .await
        .expect(200);
    converged(&app, Duration::from_secs(30)).await;
    // Those two writes applied their changes themselves (cause `write`); a
    // rebuild asked for goes through the queue.
    app.post(&format!("/v1/segments/{vip}/rebuild"), json!({}))
        .await
        .expect(202);
    converged(&app, Duration::from_secs(30)).await;
    // The set converged, but the job's bookkeeping follows its last write.
    let expected: [(&str, &[&str]); 6] = [
        ("segments_jobs_enqueued_total", &[r#"kind="rebuild""#]),
        (
            "segments_jobs_total",
            &[r#"kind="rebuild""#, r#"outcome="done""#],
        ),
        ("segments_job_latency_seconds_count", &[r#"kind="rebuild""#]),
        ("segments_rebuild_duration_seconds_count", &[]),
        (
            "segments_members_changed_total",
            &[r#"change="entered""#, r#"cause="write""#],
        ),
        (
            "segments_members_changed_total",
            &[r#"change="exited""#, r#"cause="write""#],
        ),
    ];
    let value = |e: &str, name: &str, labels: &[&str]| {
        segments_tests::metric(e, name, labels).unwrap_or(0.0)
    };
    segments_tests::eventually(Duration::from_secs(10), || async {
        let after = app.metrics().await;
        let stuck: Vec<&str> = expected
            .iter()
            .filter(|(name, labels)| value(&after, name, labels) <= value(&before, name, labels))
            .map(|(name, _)| *name)
            .collect();
        if stuck.is_empty() && after.contains("segments_job_queue_depth ") {
            Ok(())
        } else {
            Err(format!(
                "metrics did not move (segment {vip}): {stuck:?}\n{after}"
            ))
        }
    })
    .await;
    app.stop().await;
}

/// A tag on more contacts than one bulk write carries is renamed without
/// evaluating them all inside the request: the segments reading tags are
/// rebuilt through the queue (`RebuildReading`), and the sets follow.
async fn renaming_a_tag_on_more_contacts_than_a_bulk_write_rebuilds_through_the_queue(
    backend: Backend,
) {
    let app = TestApp::spawn_materialized(backend, REDIS, 1).await;
    let before = app.metrics().await;
    let wide = segments_domain::limits::MAX_BULK_TAG_CONTACTS + 1;
    for start in (0..wide).step_by(5_000) {
        let contacts: Vec<Value> = (start..(start + 5_000).min(wide))
            .map(|i| json!({"external_id": format!("w{i}"), "tags": ["wide"]}))
            .collect();
        app.post("/v1/contacts/bulk-upsert", json!({"contacts": contacts}))
            .await
            .expect(200);
    }
    let old = dynamic(
        &app,
        json!({"type": "tag", "params": {"op": "has_any", "tags": ["wide"]}}),
    )
    .await;
    let new = dynamic(
        &app,
        json!({"type": "tag", "params": {"op": "has_any", "tags": ["renamed"]}}),
    )
    .await;
    converged(&app, Duration::from_secs(60)).await;
    let tags = app.get("/v1/tags").await.expect(200);
    let tag = tags["items"][0]["id"].as_i64().unwrap();
    app.patch(&format!("/v1/tags/{tag}"), json!({"name": "renamed"}))
        .await
        .expect(200);
    converged(&app, Duration::from_secs(60)).await;
    for (segment, count) in [(old, 0), (new, wide)] {
        let read = app
            .get(&format!("/v1/segments/{segment}"))
            .await
            .expect(200);
        assert_eq!(read["membership"]["count"], count, "{read}");
    }
    let done = |e: &str| {
        segments_tests::metric(
            e,
            "segments_jobs_total",
            &[r#"kind="rebuild_reading""#, r#"outcome="done""#],
        )
        .unwrap_or(0.0)
    };
    // The set converged; the job's bookkeeping follows its last write.
    segments_tests::eventually(Duration::from_secs(10), || async {
        if done(&app.metrics().await) > done(&before) {
            Ok(())
        } else {
            Err("no rebuild_reading job counted as done".to_owned())
        }
    })
    .await;
    app.stop().await;
}

on_both_backends!(
    renaming_a_tag_on_more_contacts_than_a_bulk_write_rebuilds_through_the_queue,
    jobs_rebuilds_and_member_changes_are_counted,
    finished_jobs_are_vacuumed,
    sets_follow_every_kind_of_write,
    snapshots_events_and_a_contacts_segments,
    a_stale_evaluation_never_overwrites_a_newer_one,
);
