//! The sets on a real Redis Cluster (three masters on loopback ports),
//! the job queue on the standalone Redis: builds, the change log's sweep,
//! the drift check's repairs and stray removal all run against workspaces
//! whose keys live on different nodes, and every set ends equal to SQL.
//! Nothing runs in the background: each step is called directly.

use std::time::Duration;

use redis::AsyncCommands;
use segments_conditions::Limits;
use segments_domain::{ContactPatch, ExternalId, Label, SegmentId, TagName, WorkspaceId};
use segments_store::SegmentRule;
use segments_tests::{Backend, RedisCluster, TestApp};
use segments_worker::{Materializer, MaterializerSettings};
use serde_json::json;

use crate::REDIS;

fn patch(i: usize, vip: bool) -> ContactPatch {
    ContactPatch {
        external_id: Some(Some(ExternalId::parse(&format!("c{i}")).unwrap())),
        tags: Some(if vip {
            vec![TagName::parse("vip").unwrap()]
        } else {
            Vec::new()
        }),
        ..Default::default()
    }
}

/// The segments of `ws` whose set differs from SQL.
async fn differences(app: &TestApp, m: &Materializer, ws: WorkspaceId) -> Vec<SegmentId> {
    crate::differences_in(app, m, ws)
        .await
        .into_iter()
        .map(|(segment, _, _)| segment)
        .collect()
}

#[tokio::test]
async fn sets_live_on_a_redis_cluster() {
    let mut cluster = RedisCluster::start(3);
    let app = TestApp::spawn(Backend::Postgres).await;
    let prefix = format!("segtest-cluster-{}", std::process::id());
    let m = Materializer::connect_cluster(
        app.store.clone(),
        &cluster.urls(),
        REDIS,
        MaterializerSettings {
            prefix: prefix.clone(),
            ..MaterializerSettings::default()
        },
    )
    .await
    .unwrap();

    // Workspaces until two of them are served by different nodes.
    let mut spaces: Vec<(WorkspaceId, SegmentId)> = Vec::new();
    let mut nodes = std::collections::BTreeSet::new();
    while nodes.len() < 2 || spaces.len() < 2 {
        assert!(spaces.len() < 12, "every workspace landed on one node");
        let (ws, _) = app
            .store
            .create_workspace(&Label::parse("cluster").unwrap())
            .await
            .unwrap();
        let ws = ws.id;
        nodes.insert(cluster.node_of(&m.keys().members(ws, SegmentId(1))));
        let items: Vec<(usize, ContactPatch)> =
            (0..300).map(|i| (i, patch(i, i % 3 == 0))).collect();
        let outcome = app.store.upsert_contacts(ws, &items).await.unwrap();
        assert!(outcome.rejected.is_empty());
        let segment = app
            .store
            .create_segment(
                ws,
                "vip",
                &SegmentRule::Dynamic(
                    json!({"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}),
                ),
                Limits::default(),
            )
            .await
            .unwrap()
            .id;
        spaces.push((ws, segment));
    }

    // Builds (every set is unbuilt), then a clean check.
    let report = m.reconcile().await.unwrap();
    assert_eq!(report.built as usize, spaces.len(), "{report:?}");
    for (ws, segment) in &spaces {
        assert!(differences(&app, &m, *ws).await.is_empty());
        assert_eq!(m.all_members(*ws, *segment).await.unwrap().len(), 100);
    }
    let holding: Vec<u64> = cluster.ports.iter().map(|p| cluster.keys_on(*p)).collect();
    assert!(
        holding.iter().filter(|n| **n > 0).count() >= 2,
        "keys on one node only: {holding:?}"
    );

    // Writes reach the sets through the change log's sweep.
    for (ws, _) in &spaces {
        let items = vec![(0, patch(1, true)), (1, patch(0, false))];
        app.store.upsert_contacts(*ws, &items).await.unwrap();
    }
    let report = m.reconcile().await.unwrap();
    assert!(
        report.swept_changes >= 2 * spaces.len() as u64,
        "{report:?}"
    );
    for (ws, _) in &spaces {
        assert!(differences(&app, &m, *ws).await.is_empty());
    }

    // Drift made behind the materializer's back is repaired in place.
    let mut conn = m.redis();
    let mut damaged = 0;
    for (ws, segment) in &spaces {
        let members = m.all_members(*ws, *segment).await.unwrap();
        let key = m.keys().members(*ws, *segment);
        let _: () = conn.srem(&key, members[0].0).await.unwrap();
        let _: () = conn.sadd(&key, 900_000_001_i64).await.unwrap();
        damaged += 2;
        assert!(!differences(&app, &m, *ws).await.is_empty());
    }
    let report = m.reconcile().await.unwrap();
    assert_eq!(report.repaired_members, damaged, "{report:?}");
    for (ws, _) in &spaces {
        assert!(differences(&app, &m, *ws).await.is_empty());
    }

    // A node restarted empty: the next tick builds the sets it lost.
    let (lost_ws, lost_segment) = spaces[0];
    let node = cluster.node_of(&m.keys().members(lost_ws, lost_segment));
    cluster.restart_empty(node);
    assert_eq!(cluster.keys_on(node), 0);
    // The client finds the node again after a failed command or two.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let report = loop {
        match m.reconcile().await {
            Ok(report) => break report,
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(report.built >= 1, "{report:?}");
    for (ws, _) in &spaces {
        assert!(differences(&app, &m, *ws).await.is_empty());
    }

    // Deleted segments' keys go, found by a scan of each one's node (the
    // workspaces are on two nodes at least: no one node has them all).
    for (ws, segment) in &spaces {
        app.store.delete_segment(*ws, *segment).await.unwrap();
    }
    let report = m.reconcile().await.unwrap();
    assert_eq!(report.stray_segments as usize, spaces.len(), "{report:?}");
    for (ws, segment) in &spaces {
        let meta: bool = conn.exists(m.keys().meta(*ws, *segment)).await.unwrap();
        assert!(!meta, "the deleted segment's meta is still there");
    }
    app.stop().await;
}
