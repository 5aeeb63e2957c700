//! The parsed-catalog cache: every catalog write reaches every store, even
//! one with its own pool and cache (the worker of `segments serve`, another
//! process), on both databases.

use segments_conditions::{Limits, Registry};
use segments_domain::{AttributeKey, AttributeType, Label, SegmentId};
use segments_store::{SegmentRule, Store, StoreError};
use segments_tests::{Backend, TestDatabase};
use serde_json::json;

fn names(catalog: &segments_store::Catalog) -> Vec<(SegmentId, String)> {
    catalog
        .records
        .iter()
        .map(|r| (r.id, r.name.clone()))
        .collect()
}

async fn catalog_follows_every_catalog_write(backend: Backend) {
    let db = TestDatabase::create(backend).await;
    let writer = Store::connect(&db.settings(), std::sync::Arc::new(Registry::builtin()))
        .await
        .unwrap();
    writer.migrate().await.unwrap();
    // A second store, as a worker process has: its own pool, its own cache.
    let reader = writer.connect_another(&db.settings()).await.unwrap();
    let (record, _) = writer
        .create_workspace(&Label::parse("catalog").unwrap())
        .await
        .unwrap();
    let ws = record.id;
    let version = |store: &Store| {
        let store = store.clone();
        async move { store.catalog_version(ws).await.unwrap().unwrap() }
    };
    // Both caches hold the empty catalog.
    for store in [&writer, &reader] {
        let catalog = store.catalog(ws).await.unwrap();
        assert!(catalog.records.is_empty() && catalog.attributes.is_empty());
    }
    let mut last = version(&reader).await;
    let mut bumped = |now: i64, what: &str| {
        assert!(now > last, "{what} did not change the catalog version");
        last = now;
    };

    let score = AttributeKey::parse("score").unwrap();
    writer
        .define_attribute(ws, &score, AttributeType::Number)
        .await
        .unwrap();
    bumped(version(&reader).await, "declaring an attribute");
    let catalog = reader.catalog(ws).await.unwrap();
    assert!(catalog.attributes.contains_key("score"));

    let rule = SegmentRule::Dynamic(
        json!({"type": "attribute", "params": {"key": "score", "op": "ge", "value": 5}}),
    );
    let segment = writer
        .create_segment(ws, "high", &rule, Limits::default())
        .await
        .unwrap();
    bumped(version(&reader).await, "creating a segment");
    let catalog = reader.catalog(ws).await.unwrap();
    assert_eq!(names(&catalog), vec![(segment.id, "high".to_owned())]);
    assert!(catalog.broken.is_empty(), "{:?}", catalog.broken);

    writer
        .update_segment(ws, segment.id, Some("higher"), None, Limits::default())
        .await
        .unwrap();
    bumped(version(&reader).await, "renaming a segment");
    let catalog = reader.catalog(ws).await.unwrap();
    assert_eq!(names(&catalog), vec![(segment.id, "higher".to_owned())]);

    // The attribute a segment reads cannot be deleted: the refusal, checked
    // inside the write, rolls the version back with it.
    let refused = writer.delete_attribute(ws, "score").await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Conflict {
                code: "attribute_in_use",
                ..
            })
        ),
        "{refused:?}"
    );
    let unchanged = version(&reader).await;

    writer.delete_segment(ws, segment.id).await.unwrap();
    let deleted = version(&reader).await;
    assert_eq!(
        deleted,
        unchanged + 1,
        "only the segment's deletion changed the version"
    );
    bumped(deleted, "deleting a segment");
    assert!(names(&reader.catalog(ws).await.unwrap()).is_empty());

    writer.delete_attribute(ws, "score").await.unwrap();
    bumped(version(&reader).await, "deleting an attribute");
    assert!(reader.catalog(ws).await.unwrap().attributes.is_empty());

    // A write that fails changes neither the catalog nor its version.
    let missing = SegmentId(segment.id.0 + 1_000);
    assert!(writer.delete_segment(ws, missing).await.is_err());
    assert!(
        writer
            .update_segment(ws, missing, Some("nobody"), None, Limits::default())
            .await
            .is_err()
    );
    assert_eq!(version(&reader).await, last);

    // Versions are per workspace.
    let (other, _) = writer
        .create_workspace(&Label::parse("other").unwrap())
        .await
        .unwrap();
    writer
        .create_segment(other.id, "theirs", &SegmentRule::Static, Limits::default())
        .await
        .unwrap();
    assert_eq!(version(&reader).await, last);
    assert!(names(&reader.catalog(ws).await.unwrap()).is_empty());
}

#[tokio::test]
async fn catalog_follows_every_catalog_write_on_sqlite() {
    catalog_follows_every_catalog_write(Backend::Sqlite).await;
}

#[tokio::test]
async fn catalog_follows_every_catalog_write_on_postgres() {
    catalog_follows_every_catalog_write(Backend::Postgres).await;
}

/// A write's inline apply takes the catalog through `catalog_as_of` with
/// the version its write read after committing: a cache of an older
/// version is never used for it (a segment defined before the write must
/// be evaluated), a newer one may be. On PostgreSQL a tag write reports
/// that version; elsewhere it reports none and the catalog is read.
async fn a_write_is_evaluated_under_a_catalog_at_least_as_new_as_its_commit(backend: Backend) {
    let db = TestDatabase::create(backend).await;
    let writer = Store::connect(&db.settings(), std::sync::Arc::new(Registry::builtin()))
        .await
        .unwrap();
    writer.migrate().await.unwrap();
    let reader = writer.connect_another(&db.settings()).await.unwrap();
    let (record, _) = writer
        .create_workspace(&Label::parse("as of").unwrap())
        .await
        .unwrap();
    let ws = record.id;
    let contact = writer
        .create_contact(ws, &segments_domain::ContactPatch::default())
        .await
        .unwrap()
        .contact
        .id;
    // The reader's cache holds the empty catalog.
    assert!(reader.catalog(ws).await.unwrap().records.is_empty());
    let before = reader.catalog_version(ws).await.unwrap().unwrap();
    let rule =
        SegmentRule::Dynamic(json!({"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}));
    let segment = writer
        .create_segment(ws, "vips", &rule, Limits::default())
        .await
        .unwrap();
    let patch = segments_domain::ContactPatch {
        add_tags: vec![segments_domain::TagName::parse("vip").unwrap()],
        ..Default::default()
    };
    let written = writer.update_contact(ws, contact, &patch).await.unwrap();
    let after = reader.catalog_version(ws).await.unwrap().unwrap();
    assert!(after > before);
    match backend {
        Backend::Postgres => assert_eq!(written.catalog_version, Some(after)),
        Backend::Sqlite => assert_eq!(written.catalog_version, None),
    }
    let catalog = reader
        .catalog_as_of(ws, written.catalog_version)
        .await
        .unwrap();
    assert_eq!(names(&catalog), vec![(segment.id, "vips".to_owned())]);
    // Asked for an older version, the cached newer catalog serves.
    let catalog = reader.catalog_as_of(ws, Some(before)).await.unwrap();
    assert_eq!(names(&catalog), vec![(segment.id, "vips".to_owned())]);
}

#[tokio::test]
async fn a_write_is_evaluated_under_a_current_catalog_on_sqlite() {
    a_write_is_evaluated_under_a_catalog_at_least_as_new_as_its_commit(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_write_is_evaluated_under_a_current_catalog_on_postgres() {
    a_write_is_evaluated_under_a_catalog_at_least_as_new_as_its_commit(Backend::Postgres).await;
}
