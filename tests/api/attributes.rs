use segments_tests::{Backend, Reply, TestApp, on_both_backends};
use serde_json::json;

async fn values_must_fit_the_declared_type(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (key, ty) in [
        ("n", "number"),
        ("t", "text"),
        ("b", "boolean"),
        ("d", "date"),
    ] {
        app.attribute(key, ty).await;
    }
    let wrong = [
        ("n", json!("12")),
        ("n", json!(true)),
        ("t", json!(5)),
        ("b", json!("true")),
        ("b", json!(1)),
        ("d", json!("yesterday")),
        ("d", json!(20240101)),
        ("t", json!("x".repeat(501))),
        ("d", json!("0999-12-31")),
    ];
    for (key, value) in wrong {
        let problem = app
            .post("/v1/contacts", json!({"attributes": {key: value.clone()}}))
            .await
            .problem(422);
        assert_eq!(
            Reply::pointers(&problem),
            vec![format!("/attributes/{key}")],
            "{value}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains(key),
            "{problem}"
        );
    }
    let fine = app
        .contact(json!({"attributes": {"n": -0.5, "t": "", "b": false, "d": "2024-02-29T23:59:59+01:00"}}))
        .await;
    assert_eq!(
        fine["attributes"],
        json!({"n": -0.5, "t": "", "b": false, "d": "2024-02-29T22:59:59Z"})
    );
    app.stop().await;
}

async fn undeclared_attributes_are_refused_by_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let problem = app
        .post("/v1/contacts", json!({"attributes": {"ghost": 1}}))
        .await
        .problem(422);
    assert_eq!(Reply::pointers(&problem), vec!["/attributes/ghost"]);
    assert_eq!(problem["errors"][0]["code"], "undeclared_attribute");
    app.stop().await;
}

async fn definitions_are_listed_deduplicated_and_deleted_with_their_values(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("plan", "text").await;
    app.attribute("age", "number").await;
    let problem = app
        .post("/v1/attributes", json!({"key": "plan", "type": "number"}))
        .await
        .problem(409);
    assert_eq!(Reply::pointers(&problem), vec!["/key"]);
    app.post("/v1/attributes", json!({"key": "Bad-Key", "type": "text"}))
        .await
        .problem(422);
    app.post("/v1/attributes", json!({"key": "ok", "type": "colour"}))
        .await
        .problem(422);
    let list = app.get("/v1/attributes").await.expect(200);
    let keys: Vec<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].clone())
        .collect();
    assert_eq!(keys, vec![json!("age"), json!("plan")]);
    let id = app
        .contact(json!({"attributes": {"plan": "gold", "age": 3}}))
        .await["id"]
        .as_i64()
        .unwrap();
    app.delete("/v1/attributes/plan").await.expect(204);
    app.delete("/v1/attributes/plan").await.problem(404);
    let c = app.get(&format!("/v1/contacts/{id}")).await.expect(200);
    assert_eq!(c["attributes"], json!({"age": 3}));
    app.stop().await;
}

async fn attributes_read_by_segments_cannot_be_deleted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("plan", "text").await;
    let tree = json!({"not": {"type": "attribute", "params": {"key": "plan", "op": "eq", "value": "free"}}});
    let seg = app
        .post(
            "/v1/segments",
            json!({"name": "paying", "kind": "dynamic", "conditions": tree}),
        )
        .await
        .expect(201);
    let problem = app.delete("/v1/attributes/plan").await.problem(409);
    assert!(
        problem["detail"].as_str().unwrap().contains("paying"),
        "{problem}"
    );
    app.delete(&format!("/v1/segments/{}", seg["id"]))
        .await
        .expect(204);
    app.delete("/v1/attributes/plan").await.expect(204);
    app.stop().await;
}

on_both_backends!(
    attributes_read_by_segments_cannot_be_deleted,
    values_must_fit_the_declared_type,
    undeclared_attributes_are_refused_by_name,
    definitions_are_listed_deduplicated_and_deleted_with_their_values,
);
