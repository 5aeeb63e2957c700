//! The materializer against a real Redis and both databases: every set
//! converges on the SQL evaluation of its segment, stale evaluations never
//! win, and no committed change is lost while Redis is away.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;
mod commit_order;
mod convergence;
mod crash;
mod drift;
mod outage;
mod read_your_writes;
mod sets;
mod time;

use std::time::Duration;

use segments_conditions::SegmentSql;
use segments_domain::{ContactId, SegmentId, Timestamp};
use segments_tests::TestApp;

pub const REDIS: &str = "redis://127.0.0.1:6379";

/// Every segment of the app's first workspace whose set differs from SQL,
/// with the two member lists.
pub async fn differences(app: &TestApp) -> Vec<(SegmentId, Vec<ContactId>, Vec<ContactId>)> {
    let m = &app.materialized.as_ref().unwrap().materializer;
    let ws = app.workspace_id().await;
    differences_in(app, m, ws).await
}

/// Every segment of workspace `ws` whose set (as `m` reads it) differs
/// from SQL, with the two member lists.
pub async fn differences_in(
    app: &TestApp,
    m: &segments_worker::Materializer,
    ws: segments_domain::WorkspaceId,
) -> Vec<(SegmentId, Vec<ContactId>, Vec<ContactId>)> {
    let catalog = app.store.catalog(ws).await.unwrap();
    let mut out = Vec::new();
    for record in &catalog.records {
        let ctx = catalog.sql_context(app.store.sql_backend(), Timestamp::now());
        let sql = catalog.segments.membership_sql(record.id, &ctx).unwrap();
        let expected = app.store.ids_where(ws, sql).await.unwrap();
        let actual = m.all_members(ws, record.id).await.unwrap();
        let built = m.status(ws, record.id).await.unwrap().is_some();
        if !built || expected != actual {
            out.push((record.id, expected, actual));
        }
    }
    out
}

/// Waits until every set equals SQL; fails with the differences after `within`.
/// Then holds the layout's invariant: no live key of a segment expires.
pub async fn converged(app: &TestApp, within: Duration) {
    segments_tests::eventually(within, || async {
        let diff = differences(app).await;
        if diff.is_empty() {
            Ok(())
        } else {
            Err(format!("sets did not converge: {diff:?}"))
        }
    })
    .await;
    assert_no_expiry(app).await;
}

/// Fails if a live key of any segment (members, meta, versions) carries a
/// time to live: only temporary build sets and snapshots may expire.
pub async fn assert_no_expiry(app: &TestApp) {
    let m = &app.materialized.as_ref().unwrap().materializer;
    let ws = app.workspace_id().await;
    let catalog = app.store.catalog(ws).await.unwrap();
    let mut conn = m.redis();
    for record in &catalog.records {
        for key in [
            m.keys().members(ws, record.id),
            m.keys().meta(ws, record.id),
            m.keys().versions(ws, record.id),
        ] {
            let ttl: i64 = redis::AsyncCommands::ttl(&mut conn, &key).await.unwrap();
            // -1: no expiry; -2: no such key (an empty set or no decision yet).
            assert!(ttl < 0, "{key} expires in {ttl} s");
        }
    }
}
