use segments_tests::{Backend, Reply, TestApp, on_both_backends};
use serde_json::json;

async fn tags_are_case_insensitive_and_counted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.contact(json!({"tags": ["VIP"]})).await;
    app.contact(json!({"tags": ["vip", "new"]})).await;
    app.contact(json!({"tags": ["Ünïcode"]})).await;
    app.contact(json!({"tags": ["üNÏCODE"]})).await;
    let tags = app.get("/v1/tags").await.expect(200);
    let summary: Vec<_> = tags["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["contact_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![("new".into(), 1), ("VIP".into(), 2), ("Ünïcode".into(), 2)]
    );
    app.stop().await;
}

async fn tags_are_renamed_and_deleted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let c = app.contact(json!({"tags": ["old", "keep"]})).await;
    let id = c["id"].as_i64().unwrap();
    let tags = app.get("/v1/tags").await.expect(200);
    let old = tags["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "old")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let renamed = app
        .patch(&format!("/v1/tags/{old}"), json!({"name": "Fresh"}))
        .await
        .expect(200);
    assert_eq!(
        (renamed["name"].clone(), renamed["contact_count"].clone()),
        (json!("Fresh"), json!(1))
    );
    let problem = app
        .patch(&format!("/v1/tags/{old}"), json!({"name": "KEEP"}))
        .await
        .problem(409);
    assert_eq!(Reply::pointers(&problem), vec!["/name"]);
    app.patch(&format!("/v1/tags/{old}"), json!({"name": "fresh"}))
        .await
        .expect(200);
    assert_eq!(
        app.get(&format!("/v1/contacts/{id}")).await.expect(200)["tags"],
        json!(["fresh", "keep"])
    );
    app.delete(&format!("/v1/tags/{old}")).await.expect(204);
    app.get(&format!("/v1/tags/{old}")).await.problem(404);
    assert_eq!(
        app.get(&format!("/v1/contacts/{id}")).await.expect(200)["tags"],
        json!(["keep"])
    );
    app.stop().await;
}

async fn many_contacts_are_tagged_and_untagged_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.contact(json!({})).await["id"].as_i64().unwrap());
    }
    let mut with_missing = ids.clone();
    with_missing.push(987_654_321);
    let result = app
        .post(
            "/v1/tags/apply",
            json!({"contact_ids": with_missing, "tags": ["promo", "q4"]}),
        )
        .await
        .expect(200);
    assert_eq!(result, json!({"updated": 5, "not_found": [987_654_321]}));
    let result = app
        .post(
            "/v1/tags/remove",
            json!({"contact_ids": &ids[..2], "tags": ["PROMO"]}),
        )
        .await
        .expect(200);
    assert_eq!(result["updated"], 2);
    let tags = app.get("/v1/tags").await.expect(200);
    let counts: Vec<_> = tags["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["contact_count"].clone())
        .collect();
    assert_eq!(counts, vec![json!(3), json!(5)]);
    app.stop().await;
}

async fn tag_pages_follow_name_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let names: Vec<String> = (0..7).map(|i| format!("T{i}")).collect();
    app.contact(json!({"tags": names})).await;
    let mut seen = Vec::new();
    let mut path = "/v1/tags?limit=3".to_owned();
    loop {
        let page = app.get(&path).await.expect(200);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/tags?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, vec!["T0", "T1", "T2", "T3", "T4", "T5", "T6"]);
    app.stop().await;
}

on_both_backends!(
    tags_are_case_insensitive_and_counted,
    tags_are_renamed_and_deleted,
    many_contacts_are_tagged_and_untagged_at_once,
    tag_pages_follow_name_order,
);
