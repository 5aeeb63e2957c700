use segments_tests::{Backend, TestApp, on_both_backends};
use serde_json::{Value, json};

fn batch(n: usize) -> Value {
    let contacts: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "external_id": format!("ext-{i}"),
                "name": format!("Contact {i}"),
                "channel": if i % 2 == 0 { "whatsapp" } else { "sms" },
                "opted_in": i % 3 == 0,
                "tags": [format!("t{}", i % 4), "all"],
                "attributes": {"score": i, "tier": format!("tier-{}", i % 3)}
            })
        })
        .collect();
    json!({ "contacts": contacts })
}

/// Each rejected item's index and its first error's pointer.
fn first_errors(result: &Value) -> Vec<(i64, String)> {
    result["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_i64().unwrap(),
                e["errors"][0]["pointer"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn all_contacts(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = "/v1/contacts?limit=1000".to_owned();
    loop {
        let page = app.get(&path).await.expect(200);
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/contacts?limit=1000&cursor={c}"),
            None => return out,
        }
    }
}

/// Everything but the timestamps that a repeated upsert legitimately moves.
fn stable(contacts: &[Value]) -> Vec<Value> {
    contacts
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c.as_object_mut().unwrap().remove("updated_at");
            c
        })
        .collect()
}

async fn bulk_upsert_is_idempotent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("score", "number").await;
    app.attribute("tier", "text").await;
    let first = app
        .post("/v1/contacts/bulk-upsert", batch(2500))
        .await
        .expect(200);
    assert_eq!(
        (first["created"].clone(), first["updated"].clone()),
        (json!(2500), json!(0))
    );
    assert_eq!(first["errors"], json!([]));
    let before = all_contacts(&app).await;
    assert_eq!(before.len(), 2500);
    let second = app
        .post("/v1/contacts/bulk-upsert", batch(2500))
        .await
        .expect(200);
    assert_eq!(
        (second["created"].clone(), second["updated"].clone()),
        (json!(0), json!(2500))
    );
    let ids = |r: &Value| -> Vec<Value> {
        r["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].clone())
            .collect()
    };
    assert_eq!(ids(&first), ids(&second));
    let after = all_contacts(&app).await;
    assert_eq!(stable(&before), stable(&after));
    let c = &after[5];
    assert_eq!(c["tags"], json!(["all", "t1"]));
    assert_eq!(c["attributes"], json!({"score": 5, "tier": "tier-2"}));
    app.stop().await;
}

async fn bulk_items_patch_existing_contacts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("score", "number").await;
    app.attribute("tier", "text").await;
    app.post("/v1/contacts/bulk-upsert", batch(3))
        .await
        .expect(200);
    let update = json!({"contacts": [
        {"external_id": "ext-1", "email": "one@example.com", "attributes": {"tier": null}},
        {"external_id": "ext-2", "tags": []}
    ]});
    let result = app
        .post("/v1/contacts/bulk-upsert", update)
        .await
        .expect(200);
    assert_eq!(result["updated"], 2);
    let contacts = all_contacts(&app).await;
    assert_eq!(contacts[1]["name"], "Contact 1");
    assert_eq!(contacts[1]["email"], "one@example.com");
    assert_eq!(contacts[1]["attributes"], json!({"score": 1}));
    assert_eq!(contacts[1]["tags"], json!(["all", "t1"]));
    assert_eq!(contacts[2]["tags"], json!([]));
    app.stop().await;
}

async fn invalid_items_are_reported_and_valid_ones_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("score", "number").await;
    let body = json!({"contacts": [
        {"external_id": "ok-1"},
        {"name": "no external id"},
        {"external_id": "bad-email", "email": "nope"},
        {"external_id": "ok-1"},
        {"external_id": "bad-score", "attributes": {"score": "high"}},
        {"external_id": "ok-2", "tags": ["x"]}
    ]});
    let result = app.post("/v1/contacts/bulk-upsert", body).await.expect(200);
    assert_eq!(result["created"], 2);
    let stored: Vec<_> = result["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["index"].clone())
        .collect();
    assert_eq!(stored, vec![json!(0), json!(5)]);
    let errors = first_errors(&result);
    assert_eq!(
        errors,
        vec![
            (1, "/contacts/1/external_id".into()),
            (2, "/contacts/2/email".into()),
            (3, "/contacts/3/external_id".into()),
            (4, "/contacts/4/attributes/score".into()),
        ]
    );
    assert_eq!(all_contacts(&app).await.len(), 2);
    // An unknown field is one item's error like any other: the rest is stored.
    let body = json!({"contacts": [{"external_id": "new"}, {"external_id": "bad-field", "colour": "red"}]});
    let result = app.post("/v1/contacts/bulk-upsert", body).await.expect(200);
    assert_eq!(
        result["errors"][0]["errors"][0]["pointer"],
        "/contacts/1/colour"
    );
    assert_eq!(all_contacts(&app).await.len(), 3);
    app.stop().await;
}

async fn bulk_limits_are_enforced(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.post("/v1/contacts/bulk-upsert", json!({"contacts": []}))
        .await
        .problem(422);
    let too_many: Vec<Value> = (0..10_001)
        .map(|i| json!({"external_id": i.to_string()}))
        .collect();
    let problem = app
        .post("/v1/contacts/bulk-upsert", json!({"contacts": too_many}))
        .await
        .problem(422);
    assert_eq!(problem["errors"][0]["pointer"], "/contacts");
    app.stop().await;
}

/// What the planner believes `contacts` holds: `None` before any analysis.
async fn planned_contacts(app: &TestApp) -> Option<i64> {
    use sea_orm::{ConnectionTrait, Statement};
    let db = app.store.connection();
    let backend = db.get_database_backend();
    let sql = match backend {
        // -1 means never analyzed (PostgreSQL 14 and later).
        sea_orm::DbBackend::Postgres => {
            "SELECT CAST(reltuples AS BIGINT) AS n FROM pg_class WHERE relname = 'contacts' AND reltuples >= 0"
        }
        // The first number of a stat line is the table's row count.
        _ => "SELECT CAST(stat AS INTEGER) AS n FROM sqlite_stat1 WHERE tbl = 'contacts' LIMIT 1",
    };
    match db.query_one_raw(Statement::from_string(backend, sql)).await {
        Ok(Some(row)) => row.try_get::<i64>("", "n").ok(),
        // sqlite_stat1 exists only once something was analyzed.
        _ => None,
    }
}

async fn bulk_loads_refresh_the_planners_statistics(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("score", "number").await;
    app.attribute("tier", "text").await;
    app.post("/v1/contacts/bulk-upsert", batch(300))
        .await
        .expect(200);
    assert_eq!(planned_contacts(&app).await, None);
    app.store.refresh_statistics().await.unwrap();
    assert_eq!(planned_contacts(&app).await, Some(300));
}

/// Two bulk upserts of the same contacts, listed in opposite orders, at the
/// same moment: each row lock one takes the other wants. Both must succeed —
/// the first round creates the contacts, the next ones update them — and
/// leave every contact as one of the two wrote it, whole.
async fn concurrent_bulk_upserts_in_opposite_orders_both_succeed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("score", "number").await;
    let items = |round: usize, writer: usize| -> Value {
        let mut contacts: Vec<Value> = (0..3_000)
            .map(|i| {
                json!({
                    "external_id": format!("x{i}"),
                    "opted_in": writer == 0,
                    "tags": [format!("w{writer}")],
                    "attributes": {"score": round * 10 + writer}
                })
            })
            .collect();
        if writer == 1 {
            contacts.reverse();
        }
        json!({ "contacts": contacts })
    };
    for round in 0..3 {
        let (a, b) = tokio::join!(
            app.post("/v1/contacts/bulk-upsert", items(round, 0)),
            app.post("/v1/contacts/bulk-upsert", items(round, 1)),
        );
        let (a, b) = (a.expect(200), b.expect(200));
        assert_eq!(a["errors"], json!([]));
        assert_eq!(b["errors"], json!([]));
        let contacts = all_contacts(&app).await;
        assert_eq!(contacts.len(), 3_000);
        // Each request is one transaction, so the one that committed last
        // wrote every contact, and each contact holds its whole item.
        let last = usize::from(contacts[0]["tags"] == json!(["w1"]));
        for c in &contacts {
            assert_eq!(c["tags"], json!([format!("w{last}")]), "{c}");
            assert_eq!(c["opted_in"], json!(last == 0), "{c}");
            assert_eq!(c["attributes"]["score"], json!(round * 10 + last), "{c}");
        }
    }
    app.stop().await;
}

/// Items of the wrong shape — a string where a boolean goes, an unknown
/// field, an unparsable date, a string for the tag list — are reported one
/// by one with their pointers; the valid items beside them are stored.
async fn items_of_the_wrong_shape_are_reported_and_the_rest_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = json!({"contacts": [
        {"external_id": "ok-1"},
        {"external_id": "a", "opted_in": "yes"},
        {"external_id": "b", "colour": "red"},
        {"external_id": "c", "first_contacted_at": "yesterday"},
        {"external_id": "d", "tags": "vip"},
        "not an object",
        {"external_id": "ok-2", "tags": ["vip"]}
    ]});
    let result = app.post("/v1/contacts/bulk-upsert", body).await.expect(200);
    assert_eq!(result["created"], 2, "{result}");
    let errors = first_errors(&result);
    assert_eq!(
        errors,
        vec![
            (1, "/contacts/1/opted_in".into()),
            (2, "/contacts/2/colour".into()),
            (3, "/contacts/3/first_contacted_at".into()),
            (4, "/contacts/4/tags".into()),
            (5, "/contacts/5".into()),
        ],
        "{result}"
    );
    let stored: Vec<_> = all_contacts(&app)
        .await
        .iter()
        .map(|c| c["external_id"].clone())
        .collect();
    assert_eq!(stored, vec![json!("ok-1"), json!("ok-2")]);
    app.stop().await;
}

fn tags(names: &[&str]) -> Vec<segments_domain::TagName> {
    names
        .iter()
        .map(|n| segments_domain::TagName::parse(n).unwrap())
        .collect()
}

fn upsert_item(external_id: &str) -> segments_domain::ContactPatch {
    segments_domain::ContactPatch {
        external_id: Some(Some(
            segments_domain::ExternalId::parse(external_id).unwrap(),
        )),
        ..Default::default()
    }
}

/// The store's bulk upsert carries what the API does not send: tags added
/// and removed per item. Replacement, additions and removals compose the
/// same way on both backends (PostgreSQL's set-based path deletes first),
/// and each item says whether it created its contact.
async fn store_upserts_compose_replaced_added_and_removed_tags(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("tier", "text").await;
    let ws = app.workspace_id().await;
    let tier = segments_domain::AttributeKey::parse("tier").unwrap();
    let mut first = upsert_item("a");
    first.tags = Some(tags(&["old", "keep"]));
    first.attributes.insert(tier.clone(), Some(json!("gold")));
    let outcome = app
        .store
        .upsert_contacts(ws, &[(0, first), (1, upsert_item("b"))])
        .await
        .unwrap();
    assert!(outcome.stored.iter().all(|s| s.created), "{outcome:?}");

    // a: one added, one removed, one added and removed, its value cleared;
    // b: its set replaced, less a removal; c (new): added, removed, both.
    let mut a = upsert_item("a");
    a.add_tags = tags(&["new", "both"]);
    a.remove_tags = tags(&["old", "both", "never-existed"]);
    a.attributes.insert(tier.clone(), None);
    let mut b = upsert_item("b");
    b.tags = Some(tags(&["x", "y"]));
    b.remove_tags = tags(&["y"]);
    let mut c = upsert_item("c");
    c.add_tags = tags(&["fresh", "both"]);
    c.remove_tags = tags(&["both"]);
    let outcome = app
        .store
        .upsert_contacts(ws, &[(0, a), (1, b), (2, c)])
        .await
        .unwrap();
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    let created: Vec<bool> = outcome.stored.iter().map(|s| s.created).collect();
    assert_eq!(created, vec![false, false, true]);

    let contacts = all_contacts(&app).await;
    let by_external = |id: &str| {
        contacts
            .iter()
            .find(|c| c["external_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_external("a")["tags"], json!(["keep", "new"]));
    assert_eq!(by_external("a")["attributes"], json!({}));
    assert_eq!(by_external("b")["tags"], json!(["x"]));
    assert_eq!(by_external("c")["tags"], json!(["fresh"]));
    app.stop().await;
}

on_both_backends!(
    store_upserts_compose_replaced_added_and_removed_tags,
    items_of_the_wrong_shape_are_reported_and_the_rest_stored,
    concurrent_bulk_upserts_in_opposite_orders_both_succeed,
    bulk_loads_refresh_the_planners_statistics,
    bulk_upsert_is_idempotent,
    bulk_items_patch_existing_contacts,
    invalid_items_are_reported_and_valid_ones_stored,
    bulk_limits_are_enforced,
);
