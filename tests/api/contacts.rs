use segments_tests::{Backend, Reply, TestApp, on_both_backends};
use serde_json::json;

async fn a_contact_round_trips_with_tags_and_attributes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("age", "number").await;
    app.attribute("plan", "text").await;
    app.attribute("vip", "boolean").await;
    app.attribute("renewal", "date").await;
    let created = app
        .contact(json!({
            "external_id": "crm-1",
            "name": "Ana Lima",
            "phone": "+55 (11) 99999-0000",
            "email": "ana@example.com",
            "channel": "whatsapp",
            "opted_in": true,
            "first_contacted_at": "2024-03-01T12:00:00.1234567Z",
            "tags": ["VIP", "vip", "Newsletter"],
            "attributes": {"age": 31, "plan": "gold", "vip": true, "renewal": "2025-01-31"}
        }))
        .await;
    assert_eq!(created["phone"], "+5511999990000");
    assert_eq!(created["tags"], json!(["Newsletter", "VIP"]));
    assert_eq!(created["attributes"]["age"], 31);
    assert_eq!(created["attributes"]["renewal"], "2025-01-31T00:00:00Z");
    assert_eq!(created["first_contacted_at"], "2024-03-01T12:00:00.123456Z");
    assert!(created["opted_in_at"].is_string());
    let id = created["id"].as_i64().unwrap();
    let fetched = app.get(&format!("/v1/contacts/{id}")).await.expect(200);
    assert_eq!(fetched, created);
    app.stop().await;
}

async fn patch_changes_only_what_it_names(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("age", "number").await;
    app.attribute("plan", "text").await;
    let c = app
        .contact(json!({"name": "Ana", "email": "ana@example.com", "tags": ["a"], "attributes": {"age": 1, "plan": "x"}}))
        .await;
    let id = c["id"].as_i64().unwrap();
    let patched = app
        .patch(
            &format!("/v1/contacts/{id}"),
            json!({"email": null, "channel": "sms", "attributes": {"age": null}}),
        )
        .await
        .expect(200);
    assert_eq!(patched["name"], "Ana");
    assert_eq!(patched["email"], json!(null));
    assert_eq!(patched["channel"], "sms");
    assert_eq!(patched["tags"], json!(["a"]));
    assert_eq!(patched["attributes"], json!({"plan": "x"}));
    let retagged = app
        .patch(&format!("/v1/contacts/{id}"), json!({"tags": ["b", "c"]}))
        .await
        .expect(200);
    assert_eq!(retagged["tags"], json!(["b", "c"]));
    app.stop().await;
}

async fn opting_out_clears_the_opt_in_instant(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let c = app
        .contact(json!({"opted_in": true, "opted_in_at": "2023-01-01T00:00:00Z"}))
        .await;
    assert_eq!(c["opted_in_at"], "2023-01-01T00:00:00Z");
    let id = c["id"].as_i64().unwrap();
    let again = app
        .patch(&format!("/v1/contacts/{id}"), json!({"opted_in": true}))
        .await
        .expect(200);
    assert_eq!(again["opted_in_at"], "2023-01-01T00:00:00Z");
    let out = app
        .patch(&format!("/v1/contacts/{id}"), json!({"opted_in": false}))
        .await
        .expect(200);
    assert_eq!(
        (out["opted_in"].clone(), out["opted_in_at"].clone()),
        (json!(false), json!(null))
    );
    app.stop().await;
}

async fn external_ids_are_unique_per_workspace(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.contact(json!({"external_id": "x"})).await;
    let problem = app
        .post("/v1/contacts", json!({"external_id": "x"}))
        .await
        .problem(409);
    assert_eq!(Reply::pointers(&problem), vec!["/external_id"]);
    let other = app.contact(json!({"external_id": "y"})).await;
    let id = other["id"].as_i64().unwrap();
    app.patch(&format!("/v1/contacts/{id}"), json!({"external_id": "x"}))
        .await
        .problem(409);
    app.stop().await;
}

async fn deleting_a_contact_removes_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("age", "number").await;
    let c = app
        .contact(json!({"tags": ["t"], "attributes": {"age": 3}}))
        .await;
    let id = c["id"].as_i64().unwrap();
    app.delete(&format!("/v1/contacts/{id}")).await.expect(204);
    app.get(&format!("/v1/contacts/{id}")).await.problem(404);
    app.delete(&format!("/v1/contacts/{id}")).await.problem(404);
    let tags = app.get("/v1/tags").await.expect(200);
    assert_eq!(tags["items"][0]["contact_count"], 0);
    app.stop().await;
}

async fn batch_get_returns_found_contacts_in_order_and_names_the_missing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let a = app
        .contact(json!({"name": "a", "phone": "+15550001"}))
        .await["id"]
        .as_i64()
        .unwrap();
    let b = app
        .contact(json!({"name": "b", "phone": "+15550002"}))
        .await["id"]
        .as_i64()
        .unwrap();
    let got = app
        .post("/v1/contacts/batch-get", json!({"ids": [b, 999_999, a, b]}))
        .await
        .expect(200);
    let names: Vec<_> = got["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("b"), json!("a")]);
    assert_eq!(got["missing"], json!([999_999]));
    let too_many: Vec<i64> = (1..=1001).collect();
    let problem = app
        .post("/v1/contacts/batch-get", json!({"ids": too_many}))
        .await
        .problem(422);
    assert_eq!(Reply::pointers(&problem), vec!["/ids"]);
    app.stop().await;
}

async fn contact_tags_and_attribute_values_have_their_own_routes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("score", "number").await;
    let id = app.contact(json!({"tags": ["a"]})).await["id"]
        .as_i64()
        .unwrap();
    let c = app
        .post(
            &format!("/v1/contacts/{id}/tags"),
            json!({"tags": ["B", "c"]}),
        )
        .await
        .expect(200);
    assert_eq!(c["tags"], json!(["a", "B", "c"]));
    let c = app
        .post(
            &format!("/v1/contacts/{id}/tags/remove"),
            json!({"tags": ["b", "zzz"]}),
        )
        .await
        .expect(200);
    assert_eq!(c["tags"], json!(["a", "c"]));
    let c = app
        .delete(&format!("/v1/contacts/{id}/tags/A"))
        .await
        .expect(200);
    assert_eq!(c["tags"], json!(["c"]));
    // One call may name a tag the contact has (in another case), a tag
    // another contact has, and a tag nobody has yet.
    app.contact(json!({"tags": ["d"]})).await;
    let c = app
        .post(
            &format!("/v1/contacts/{id}/tags"),
            json!({"tags": ["C", "D", "e"]}),
        )
        .await
        .expect(200);
    assert_eq!(c["tags"], json!(["c", "d", "e"]));
    let c = app
        .put(
            &format!("/v1/contacts/{id}/attributes/score"),
            json!({"value": 9.5}),
        )
        .await
        .expect(200);
    assert_eq!(c["attributes"]["score"], 9.5);
    let problem = app
        .put(
            &format!("/v1/contacts/{id}/attributes/score"),
            json!({"value": "high"}),
        )
        .await
        .problem(422);
    assert_eq!(Reply::pointers(&problem), vec!["/value"]);
    assert!(problem["detail"].as_str().unwrap().contains("score"));
    let c = app
        .delete(&format!("/v1/contacts/{id}/attributes/score"))
        .await
        .expect(200);
    assert_eq!(c["attributes"], json!({}));
    app.stop().await;
}

async fn tagging_a_contact_that_is_not_there_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.contact(json!({"tags": ["a"]})).await["id"]
        .as_i64()
        .unwrap();
    let before = app.get(&format!("/v1/contacts/{id}")).await.expect(200);
    // Another workspace's key does not reach this contact, and a missing
    // contact is missing: neither creates the tag it names.
    let other = app.other_workspace().await;
    let reply = app
        .call_as(
            &other,
            reqwest::Method::POST,
            &format!("/v1/contacts/{id}/tags"),
            Some(json!({"tags": ["ghost"]})),
        )
        .await;
    reply.problem(404);
    app.post("/v1/contacts/999999999/tags", json!({"tags": ["ghost"]}))
        .await
        .problem(404);
    app.post("/v1/contacts/999999999/tags/remove", json!({"tags": ["a"]}))
        .await
        .problem(404);
    let tags = app.get("/v1/tags").await.expect(200);
    assert_eq!(tags["items"].as_array().unwrap().len(), 1, "{tags}");
    let other_tags = app
        .call_as(&other, reqwest::Method::GET, "/v1/tags", None)
        .await
        .expect(200);
    assert_eq!(other_tags["items"], json!([]));
    // A write that lands moves the contact's update time on.
    let after = app
        .post(
            &format!("/v1/contacts/{id}/tags"),
            json!({"tags": ["b", "B"]}),
        )
        .await
        .expect(200);
    assert_eq!(after["tags"], json!(["a", "b"]));
    let at = |c: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(c["updated_at"].as_str().unwrap()).unwrap()
    };
    assert!(at(&after) > at(&before), "{before} {after}");
    app.stop().await;
}

on_both_backends!(
    tagging_a_contact_that_is_not_there_changes_nothing,
    a_contact_round_trips_with_tags_and_attributes,
    patch_changes_only_what_it_names,
    opting_out_clears_the_opt_in_instant,
    external_ids_are_unique_per_workspace,
    deleting_a_contact_removes_it,
    batch_get_returns_found_contacts_in_order_and_names_the_missing,
    contact_tags_and_attribute_values_have_their_own_routes,
);
