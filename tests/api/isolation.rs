//! Two workspaces on one server: neither can see or touch the other's data,
//! and the other's ids answer exactly like ids that do not exist.

use reqwest::Method;
use segments_tests::{Backend, TestApp, on_both_backends};
use serde_json::{Value, json};

/// A problem with every occurrence of `id` replaced, for comparing answers
/// about different ids.
fn normalised(problem: &Value, id: &str) -> String {
    problem.to_string().replace(id, "<id>")
}

async fn other_workspaces_ids_answer_like_missing_ones(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("plan", "text").await;
    let contact = app
        .contact(json!({"external_id": "shared", "tags": ["secret"], "attributes": {"plan": "x"}}))
        .await;
    let cid = contact["id"].as_i64().unwrap().to_string();
    let tags = app.get("/v1/tags").await.expect(200);
    let tid = tags["items"][0]["id"].as_i64().unwrap().to_string();
    let keys = app.get("/v1/api-keys").await.expect(200);
    let kid = keys["items"][0]["id"].as_i64().unwrap().to_string();
    let missing = "987654321";

    let intruder = app.other_workspace().await;
    let probes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/contacts/{c}".into(), None),
        (
            Method::PATCH,
            "/v1/contacts/{c}".into(),
            Some(json!({"name": "pwned"})),
        ),
        (Method::DELETE, "/v1/contacts/{c}".into(), None),
        (
            Method::POST,
            "/v1/contacts/{c}/tags".into(),
            Some(json!({"tags": ["x"]})),
        ),
        (
            Method::POST,
            "/v1/contacts/{c}/tags/remove".into(),
            Some(json!({"tags": ["secret"]})),
        ),
        (Method::DELETE, "/v1/contacts/{c}/tags/secret".into(), None),
        (
            Method::DELETE,
            "/v1/contacts/{c}/attributes/plan".into(),
            None,
        ),
        (Method::GET, "/v1/tags/{t}".into(), None),
        (
            Method::PATCH,
            "/v1/tags/{t}".into(),
            Some(json!({"name": "pwned"})),
        ),
        (Method::DELETE, "/v1/tags/{t}".into(), None),
        (Method::DELETE, "/v1/api-keys/{k}".into(), None),
    ];
    for (method, template, body) in probes {
        let theirs = template
            .replace("{c}", &cid)
            .replace("{t}", &tid)
            .replace("{k}", &kid);
        let absent = template
            .replace("{c}", missing)
            .replace("{t}", missing)
            .replace("{k}", missing);
        let a = app
            .call_as(&intruder, method.clone(), &theirs, body.clone())
            .await
            .problem(404);
        let b = app
            .call_as(&intruder, method.clone(), &absent, body)
            .await
            .problem(404);
        let ids = [&cid, &tid, &kid];
        let a = ids.iter().fold(normalised(&a, ids[0]), |s, id| {
            s.replace(id.as_str(), "<id>")
        });
        assert_eq!(a, normalised(&b, missing), "{method} {template}");
    }
    app.call_as(&intruder, Method::DELETE, "/v1/attributes/plan", None)
        .await
        .problem(404);

    let got = app
        .call_as(
            &intruder,
            Method::POST,
            "/v1/contacts/batch-get",
            Some(json!({"ids": [cid.parse::<i64>().unwrap()]})),
        )
        .await
        .expect(200);
    assert_eq!(got["items"], json!([]));
    let applied = app
        .call_as(
            &intruder,
            Method::POST,
            "/v1/tags/apply",
            Some(json!({"contact_ids": [cid.parse::<i64>().unwrap()], "tags": ["x"]})),
        )
        .await
        .expect(200);
    assert_eq!(applied["updated"], 0);

    for list in ["/v1/contacts", "/v1/tags", "/v1/attributes"] {
        let page = app
            .call_as(&intruder, Method::GET, list, None)
            .await
            .expect(200);
        assert_eq!(page["items"], json!([]), "{list}");
    }
    let keys = app
        .call_as(&intruder, Method::GET, "/v1/api-keys", None)
        .await
        .expect(200);
    assert_eq!(keys["items"].as_array().unwrap().len(), 1);

    // Same external id, other workspace: a new contact, not the victim's.
    let upsert = app
        .call_as(
            &intruder,
            Method::POST,
            "/v1/contacts/bulk-upsert",
            Some(json!({"contacts": [{"external_id": "shared", "name": "mine"}]})),
        )
        .await
        .expect(200);
    assert_eq!(upsert["created"], 1);
    // Attribute definitions are per workspace too.
    app.call_as(
        &intruder,
        Method::POST,
        "/v1/contacts",
        Some(json!({"attributes": {"plan": "x"}})),
    )
    .await
    .problem(422);

    // The victim's data is untouched.
    let after = app.get(&format!("/v1/contacts/{cid}")).await.expect(200);
    assert_eq!(after, contact);
    assert_eq!(
        app.get(&format!("/v1/tags/{tid}")).await.expect(200)["name"],
        "secret"
    );
    app.stop().await;
}

on_both_backends!(other_workspaces_ids_answer_like_missing_ones);
