//! Every kind of bad input answers a 4xx problem, never a 5xx.

use reqwest::Method;
use segments_api::HttpSettings;
use segments_tests::{Backend, Reply, TestApp, on_both_backends};
use serde_json::{Value, json};

/// Every authenticated route, with a plausible body.
fn routes(contact: i64, tag: i64) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/v1/contacts".into(), None),
        (Method::POST, "/v1/contacts".into(), Some(json!({}))),
        (Method::GET, format!("/v1/contacts/{contact}"), None),
        (
            Method::PATCH,
            format!("/v1/contacts/{contact}"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("/v1/contacts/{contact}"), None),
        (
            Method::POST,
            "/v1/contacts/batch-get".into(),
            Some(json!({"ids": [contact]})),
        ),
        (
            Method::POST,
            "/v1/contacts/bulk-upsert".into(),
            Some(json!({"contacts": [{"external_id": "e"}]})),
        ),
        (
            Method::POST,
            format!("/v1/contacts/{contact}/tags"),
            Some(json!({"tags": ["a"]})),
        ),
        (
            Method::POST,
            format!("/v1/contacts/{contact}/tags/remove"),
            Some(json!({"tags": ["a"]})),
        ),
        (
            Method::DELETE,
            format!("/v1/contacts/{contact}/tags/a"),
            None,
        ),
        (
            Method::PUT,
            format!("/v1/contacts/{contact}/attributes/k"),
            Some(json!({"value": 1})),
        ),
        (
            Method::DELETE,
            format!("/v1/contacts/{contact}/attributes/k"),
            None,
        ),
        (Method::GET, "/v1/tags".into(), None),
        (Method::GET, format!("/v1/tags/{tag}"), None),
        (
            Method::PATCH,
            format!("/v1/tags/{tag}"),
            Some(json!({"name": "b"})),
        ),
        (Method::DELETE, format!("/v1/tags/{tag}"), None),
        (
            Method::POST,
            "/v1/tags/apply".into(),
            Some(json!({"contact_ids": [contact], "tags": ["a"]})),
        ),
        (
            Method::POST,
            "/v1/tags/remove".into(),
            Some(json!({"contact_ids": [contact], "tags": ["a"]})),
        ),
        (Method::GET, "/v1/attributes".into(), None),
        (
            Method::POST,
            "/v1/attributes".into(),
            Some(json!({"key": "k", "type": "number"})),
        ),
        (Method::DELETE, "/v1/attributes/k".into(), None),
        (Method::GET, "/v1/api-keys".into(), None),
        (
            Method::POST,
            "/v1/api-keys".into(),
            Some(json!({"name": "n"})),
        ),
        (Method::DELETE, "/v1/api-keys/1".into(), None),
    ]
}

async fn every_route_requires_a_valid_key(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let c = app.contact(json!({"tags": ["a"]})).await["id"]
        .as_i64()
        .unwrap();
    for (method, path, body) in routes(c, 1) {
        for key in ["", "seg_0000", "not-a-key", &format!("{}x", app.key)] {
            let reply = app.call_as(key, method.clone(), &path, body.clone()).await;
            assert!(
                reply.headers.contains_key("www-authenticate"),
                "{method} {path}"
            );
            reply.problem(401);
        }
        let mut request = app
            .client
            .request(method.clone(), format!("{}{path}", app.address));
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            401,
            "{method} {path} without Authorization"
        );
    }
    app.stop().await;
}

async fn malformed_bodies_are_client_errors(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let c = app.contact(json!({"tags": ["a"]})).await["id"]
        .as_i64()
        .unwrap();
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let junk: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"not json".to_vec(),
        b"{} trailing".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"text\"".to_vec(),
        b"1e400".to_vec(),
        b"{\"ids\": [9223372036854775808]}".to_vec(),
        b"{\"contacts\": null}".to_vec(),
        b"{\"name\": \"\\ud800\"}".to_vec(),
        deep.into_bytes(),
        vec![0xff, 0xfe, 0x00],
    ];
    for (method, path, body) in routes(c, 1) {
        if body.is_none() {
            continue;
        }
        for bytes in &junk {
            let reply = app
                .raw(method.clone(), &path, "application/json", bytes.clone())
                .await;
            let status = reply.status.as_u16();
            assert!(
                (400..500).contains(&status),
                "{method} {path} {:?} -> {status}",
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(
                reply.content_type, "application/problem+json",
                "{method} {path}"
            );
        }
        let reply = app
            .raw(method.clone(), &path, "text/plain", b"{}".to_vec())
            .await;
        reply.problem(415);
    }
    app.stop().await;
}

async fn shape_errors_name_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases = [
        ("/v1/contacts", json!({"name": 5}), "/name", "wrong_type"),
        (
            "/v1/contacts",
            json!({"nmae": "typo"}),
            "/nmae",
            "unknown_field",
        ),
        (
            "/v1/contacts",
            json!({"tags": ["ok", 3]}),
            "/tags/1",
            "wrong_type",
        ),
        (
            "/v1/contacts",
            json!({"opted_in": "yes"}),
            "/opted_in",
            "wrong_type",
        ),
        (
            "/v1/contacts",
            json!({"first_contacted_at": "last week"}),
            "/first_contacted_at",
            "invalid",
        ),
        (
            "/v1/contacts",
            json!({"email": "not-an-email"}),
            "/email",
            "invalid_email",
        ),
        (
            "/v1/contacts",
            json!({"phone": "call me"}),
            "/phone",
            "invalid_phone",
        ),
        (
            "/v1/contacts",
            json!({"channel": "WhatsApp"}),
            "/channel",
            "invalid_channel",
        ),
        (
            "/v1/contacts",
            json!({"name": "x".repeat(201)}),
            "/name",
            "too_long",
        ),
        ("/v1/contacts", json!({"tags": [""]}), "/tags/0", "empty"),
        (
            "/v1/contacts",
            json!({"attributes": {"Bad Key": 1}}),
            "/attributes/Bad Key",
            "invalid_key",
        ),
        (
            "/v1/contacts",
            json!({"first_contacted_at": "+10000-01-01T00:00:00Z"}),
            "/first_contacted_at",
            "out_of_range",
        ),
        (
            "/v1/contacts",
            json!({"first_contacted_at": "0999-01-01T00:00:00Z"}),
            "/first_contacted_at",
            "out_of_range",
        ),
        ("/v1/attributes", json!({"key": "k"}), "/type", "required"),
    ];
    for (path, body, pointer, code) in cases {
        let problem = app.post(path, body.clone()).await.problem(422);
        assert_eq!(
            Reply::pointers(&problem),
            vec![pointer.to_owned()],
            "{body}"
        );
        assert_eq!(problem["errors"][0]["code"], code, "{body}");
    }
    app.stop().await;
}

async fn oversized_bodies_are_refused(backend: Backend) {
    let http = HttpSettings {
        max_body_bytes: 16 * 1024,
        max_bulk_body_bytes: 64 * 1024,
        workers: 1,
        rate_limit: None,
        shutdown_timeout: std::time::Duration::from_secs(5),
    };
    let app = TestApp::spawn_with(backend, http).await;
    let big_name = "x".repeat(20 * 1024);
    app.post("/v1/contacts", json!({"name": big_name}))
        .await
        .problem(413);
    // The bulk route has its own, larger limit.
    let items: Vec<Value> = (0..100)
        .map(|i| json!({"external_id": format!("{i}-{}", "p".repeat(100))}))
        .collect();
    app.post("/v1/contacts/bulk-upsert", json!({"contacts": items}))
        .await
        .expect(200);
    let items: Vec<Value> = (0..1000)
        .map(|i| json!({"external_id": format!("{i}-{}", "p".repeat(100))}))
        .collect();
    app.post("/v1/contacts/bulk-upsert", json!({"contacts": items}))
        .await
        .problem(413);
    app.stop().await;
}

async fn bad_paths_and_methods_are_problems(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let problem = app.get("/v1/contacts/abc").await.problem(400);
    assert_eq!(problem["errors"][0]["parameter"], "id", "{problem}");
    app.get("/v1/contacts/99999999999999999999")
        .await
        .problem(400);
    app.get("/v1/nothing-here").await.problem(404);
    app.get("/v1/contacts/-5").await.problem(404);
    app.delete("/v1/contacts/1/tags/%20").await.problem(400);
    app.put("/v1/contacts/1/attributes/Bad-Key", json!({"value": 1}))
        .await
        .problem(400);

    // Each failing parameter is named, wherever it sits.
    let segment = app.segment(json!({"name": "s", "kind": "static"})).await;
    for (path, parameter) in [
        ("/v1/contacts?limit=ten".to_owned(), "limit"),
        ("/v1/tags?limit=1.5".to_owned(), "limit"),
        (
            format!("/v1/segments/{segment}/explain?contact_id=x"),
            "contact_id",
        ),
        (format!("/v1/segments/{segment}/explain"), "contact_id"),
    ] {
        let problem = app.get(&path).await.problem(400);
        assert_eq!(
            problem["errors"][0]["parameter"], parameter,
            "{path}: {problem}"
        );
    }
    for (body, pointer) in [
        (json!({"limit": 0}), "/limit"),
        (json!({"limit": 5000}), "/limit"),
        (json!({"cursor": "not a cursor"}), "/cursor"),
    ] {
        let problem = app
            .post("/v1/contacts/search", body.clone())
            .await
            .problem(422);
        assert_eq!(
            problem["errors"][0]["pointer"], pointer,
            "{body}: {problem}"
        );
    }

    // A body is an object: serde alone would read `[null, null]` as a
    // patch of two absent fields, and answer 200.
    let problem = app
        .patch(&format!("/v1/segments/{segment}"), json!([null, null]))
        .await
        .problem(422);
    assert_eq!(problem["errors"][0]["pointer"], "", "{problem}");
    let bulk = app
        .post(
            "/v1/contacts/bulk-upsert",
            json!({"contacts": [["x", "Ana"]]}),
        )
        .await
        .expect(200);
    assert_eq!(
        bulk["errors"][0]["errors"][0]["code"], "invalid_type",
        "{bulk}"
    );

    // A known path with another method: 405 and what it does take.
    for (method, path, allow) in [
        (Method::DELETE, "/v1/contacts".to_owned(), "GET, POST"),
        (
            Method::PUT,
            format!("/v1/segments/{segment}"),
            "DELETE, GET, PATCH",
        ),
        (Method::PATCH, "/v1/api-keys".to_owned(), "GET, POST"),
        (Method::PATCH, "/v1/contacts/search".to_owned(), "POST"),
        (Method::GET, "/v1/tags/apply".to_owned(), "POST"),
    ] {
        let reply = app.call(method.clone(), &path, None).await;
        let allowed = reply
            .headers
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        reply.problem(405);
        assert_eq!(allowed.as_deref(), Some(allow), "{method} {path}");
    }

    // Dates are written one way; a leap second is no instant we store.
    app.attribute("renewal", "date").await;
    let contact = app.contact(json!({"name": "Dated"})).await["id"]
        .as_i64()
        .unwrap();
    for value in ["1969-12-31T23:59:60Z", "2024-1-1", "2024-01-1"] {
        let problem = app
            .put(
                &format!("/v1/contacts/{contact}/attributes/renewal"),
                json!({"value": value}),
            )
            .await
            .problem(422);
        assert_eq!(
            problem["errors"][0]["pointer"], "/value",
            "{value}: {problem}"
        );
    }
    app.patch(
        &format!("/v1/contacts/{contact}"),
        json!({"opted_in": true, "opted_in_at": "2016-12-31T23:59:60Z"}),
    )
    .await
    .problem(422);
    app.stop().await;
}

/// Text PostgreSQL cannot store (NUL) is refused alike on both backends,
/// as 4xx naming the field, before it reaches a statement; and the pool
/// serves every request after them (a connection returned to it inside a
/// failed transaction once broke unrelated requests of every workspace).
async fn nul_characters_are_refused_on_both_backends_alike(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("plan", "text").await;
    let contact = app.contact(json!({"name": "Sam"})).await["id"]
        .as_i64()
        .unwrap();
    let statik = app.segment(json!({"name": "hand", "kind": "static"})).await;
    let nul = "a\u{0}b";
    let leaf = json!({"type": "attribute", "params": {"key": "plan", "op": "eq", "value": nul}});
    for (method, path, body, status, pointer) in [
        (
            Method::POST,
            "/v1/contacts".to_owned(),
            Some(json!({"attributes": {"plan": nul}})),
            422,
            Some("/attributes/plan"),
        ),
        (
            Method::PUT,
            format!("/v1/contacts/{contact}/attributes/plan"),
            Some(json!({"value": nul})),
            422,
            Some("/value"),
        ),
        (
            Method::POST,
            "/v1/contacts/bulk-upsert".to_owned(),
            Some(json!({"contacts": [{"external_id": "x", "attributes": {"plan": nul}}]})),
            200,
            None,
        ),
        (
            Method::POST,
            "/v1/segments/preview".to_owned(),
            Some(json!({"conditions": leaf})),
            422,
            Some("/conditions/params/value"),
        ),
        (
            Method::POST,
            "/v1/segments".to_owned(),
            Some(json!({"name": "n", "kind": "dynamic", "conditions": leaf})),
            422,
            Some("/conditions/params/value"),
        ),
        (
            Method::POST,
            format!("/v1/segments/{statik}/members"),
            Some(json!({"names": [nul]})),
            422,
            Some("/names/0"),
        ),
        (
            Method::POST,
            format!("/v1/contacts/{contact}/tags"),
            Some(json!({"tags": [nul]})),
            422,
            Some("/tags/0"),
        ),
        (
            Method::GET,
            "/v1/tags?cursor=djE6AA".to_owned(),
            None,
            400,
            None,
        ),
        (
            Method::DELETE,
            "/v1/attributes/%00".to_owned(),
            None,
            404,
            None,
        ),
    ] {
        let reply = app.call(method.clone(), &path, body).await;
        assert_eq!(reply.status.as_u16(), status, "{method} {path}: {reply:?}");
        if let Some(pointer) = pointer {
            assert!(
                Reply::pointers(&reply.body).iter().any(|p| p == pointer),
                "{method} {path}: {reply:?}"
            );
        }
        if status == 200 {
            // The bulk item is reported, and nothing stored for it.
            assert_eq!(reply.body["errors"][0]["index"], 0, "{reply:?}");
            assert_eq!(reply.body["created"], 0, "{reply:?}");
        }
    }
    for i in 0..200 {
        app.contact(json!({"name": format!("after {i}"), "attributes": {"plan": "pro"}}))
            .await;
    }
    assert_eq!(
        app.get("/v1/contacts?limit=1000").await.expect(200)["items"]
            .as_array()
            .unwrap()
            .len(),
        201
    );
    app.stop().await;
}

/// An unknown key answers 401 before anything about the request is looked
/// at: its query, its body, its content type.
async fn an_unknown_key_answers_401_before_any_validation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let unknown = format!("sk_{}", "0".repeat(43));
    for _ in 0..10 {
        for (method, path, body) in [
            (Method::GET, "/v1/segments/1/explain", None),
            (Method::GET, "/v1/contacts?limit=abc", None),
            (Method::GET, "/v1/contacts?cursor=%%%", None),
            (
                Method::POST,
                "/v1/contacts",
                Some(json!({"opted_in": "yes"})),
            ),
            (
                Method::POST,
                "/v1/contacts/search",
                Some(json!({"limit": -1})),
            ),
            (Method::PATCH, "/v1/contacts/not-a-number", Some(json!({}))),
        ] {
            let reply = app.call_as(&unknown, method.clone(), path, body).await;
            assert_eq!(reply.status, 401, "{method} {path}: {reply:?}");
        }
        let reply = app
            .client
            .post(format!("{}/v1/contacts", app.address))
            .bearer_auth(&unknown)
            .header("content-type", "text/plain")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 401);
    }
    app.stop().await;
}

on_both_backends!(
    an_unknown_key_answers_401_before_any_validation,
    nul_characters_are_refused_on_both_backends_alike,
    every_route_requires_a_valid_key,
    malformed_bodies_are_client_errors,
    shape_errors_name_the_field,
    oversized_bodies_are_refused,
    bad_paths_and_methods_are_problems,
);
