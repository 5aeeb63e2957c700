use segments_tests::{Backend, Reply, TestApp, on_both_backends};
use serde_json::{Value, json};

fn tag_has_any(tags: &[&str]) -> Value {
    json!({"type": "tag", "params": {"op": "has_any", "tags": tags}})
}

async fn dynamic(app: &TestApp, name: &str, conditions: Value) -> Value {
    app.post(
        "/v1/segments",
        json!({"name": name, "kind": "dynamic", "conditions": conditions}),
    )
    .await
    .expect(201)
}

async fn count(app: &TestApp, id: &Value) -> u64 {
    app.get(&format!("/v1/segments/{id}")).await.expect(200)["member_count"]
        .as_u64()
        .unwrap()
}

async fn condition_types_are_listed_with_their_schemas(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let types = app.get("/v1/condition-types").await.expect(200);
    let names: Vec<_> = types["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "attribute",
            "channel",
            "first_contacted",
            "opt_in",
            "segment",
            "tag"
        ]
    );
    for t in types["items"].as_array().unwrap() {
        // An object, or one object per operator group.
        match t["params_schema"]["oneOf"].as_array() {
            Some(branches) => {
                for branch in branches {
                    assert_eq!(branch["type"], "object", "{t}");
                }
            }
            None => assert_eq!(t["params_schema"]["type"], "object", "{t}"),
        }
    }
    // `first_contacted` says which fields each operator needs.
    let first_contacted = &types["items"][2];
    assert_eq!(first_contacted["name"], "first_contacted");
    let required: Vec<Value> = first_contacted["params_schema"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["required"].clone())
        .collect();
    assert_eq!(
        required,
        vec![json!(["op", "from", "to"]), json!(["op", "days"])]
    );
    app.stop().await;
}

async fn dynamic_membership_follows_the_data_immediately(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let a = app.contact(json!({"name": "A", "tags": ["vip"]})).await["id"].clone();
    let b = app.contact(json!({"name": "B"})).await["id"].clone();
    let seg = dynamic(&app, "VIPs", tag_has_any(&["VIP"])).await;
    assert_eq!(seg["member_count"], 1);
    assert_eq!(seg["kind"], "dynamic");
    let id = seg["id"].clone();
    app.post(&format!("/v1/contacts/{b}/tags"), json!({"tags": ["Vip"]}))
        .await
        .expect(200);
    assert_eq!(count(&app, &id).await, 2);
    let members = app
        .get(&format!("/v1/segments/{id}/members?limit=1"))
        .await
        .expect(200);
    assert_eq!(members["items"][0]["id"], a);
    let next = members["next_cursor"].as_str().unwrap();
    let members = app
        .get(&format!("/v1/segments/{id}/members?limit=1&cursor={next}"))
        .await
        .expect(200);
    assert_eq!(members["items"][0]["id"], b);
    app.delete(&format!("/v1/contacts/{a}/tags/vip"))
        .await
        .expect(200);
    assert_eq!(count(&app, &id).await, 1);
    let renamed = app
        .patch(
            &format!("/v1/segments/{id}"),
            json!({"name": "Very important"}),
        )
        .await
        .expect(200);
    assert_eq!(renamed["name"], "Very important");
    let replaced = app
        .patch(
            &format!("/v1/segments/{id}"),
            json!({"conditions": {"not": tag_has_any(&["vip"])}}),
        )
        .await
        .expect(200);
    assert_eq!(replaced["member_count"], 1);
    app.delete(&format!("/v1/segments/{id}")).await.expect(204);
    app.get(&format!("/v1/segments/{id}")).await.problem(404);
    app.stop().await;
}

async fn static_members_are_added_by_id_and_by_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = app.contact(json!({"name": "Ana"})).await["id"]
        .as_i64()
        .unwrap();
    let bo1 = app.contact(json!({"name": "Bo"})).await["id"]
        .as_i64()
        .unwrap();
    let bo2 = app.contact(json!({"name": "Bo"})).await["id"]
        .as_i64()
        .unwrap();
    let seg = app
        .post(
            "/v1/segments",
            json!({"name": "Hand-picked", "kind": "static"}),
        )
        .await
        .expect(201);
    let id = seg["id"].clone();
    let added = app
        .post(
            &format!("/v1/segments/{id}/members"),
            json!({"contact_ids": [bo1, 99_999_999], "names": ["Ana"]}),
        )
        .await
        .expect(200);
    assert_eq!(added, json!({"changed": 2, "not_found": [99_999_999]}));
    let ambiguous = app
        .post(
            &format!("/v1/segments/{id}/members"),
            json!({"names": ["Bo"]}),
        )
        .await
        .problem(409);
    assert_eq!(ambiguous["candidates"], json!([bo1, bo2]));
    assert_eq!(Reply::pointers(&ambiguous), vec!["/names/0"]);
    let unknown = app
        .post(
            &format!("/v1/segments/{id}/members"),
            json!({"names": ["Zed"]}),
        )
        .await
        .problem(404);
    assert!(unknown["detail"].as_str().unwrap().contains("Zed"));
    assert_eq!(count(&app, &id).await, 2);
    // Empty lists (or none) change nothing, as everywhere in the API.
    for nothing in [json!({"contact_ids": [], "names": []}), json!({})] {
        for route in ["members", "members/remove"] {
            let unchanged = app
                .post(&format!("/v1/segments/{id}/{route}"), nothing.clone())
                .await
                .expect(200);
            assert_eq!(unchanged, json!({"changed": 0, "not_found": []}));
        }
    }
    assert_eq!(count(&app, &id).await, 2);
    let removed = app
        .post(
            &format!("/v1/segments/{id}/members/remove"),
            json!({"contact_ids": [ana]}),
        )
        .await
        .expect(200);
    assert_eq!(removed["changed"], 1);
    assert_eq!(count(&app, &id).await, 1);
    app.patch(
        &format!("/v1/segments/{id}"),
        json!({"conditions": tag_has_any(&["x"])}),
    )
    .await
    .problem(409);
    let dynamic = dynamic(&app, "d", tag_has_any(&["x"])).await;
    app.post(
        &format!("/v1/segments/{}/members", dynamic["id"]),
        json!({"contact_ids": [ana]}),
    )
    .await
    .problem(409);
    app.stop().await;
}

async fn bad_trees_are_refused_with_the_offending_node(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("age", "number").await;
    let other = dynamic(&app, "other", tag_has_any(&["a"])).await["id"]
        .as_i64()
        .unwrap();
    let deep = (0..5).fold(tag_has_any(&["a"]), |t, _| json!({"not": t}));
    let wide: Vec<Value> = (0..101).map(|_| tag_has_any(&["a"])).collect();
    let cases = [
        (
            json!({"all": [{"type": "colour", "params": {}}]}),
            "/conditions/all/0/type",
            "unknown_condition_type",
        ),
        (
            json!({"type": "attribute", "params": {"key": "height", "op": "gt", "value": 1}}),
            "/conditions/params/key",
            "undeclared_attribute",
        ),
        (
            json!({"type": "attribute", "params": {"key": "age", "op": "contains", "value": "1"}}),
            "/conditions/params/op",
            "operator_mismatch",
        ),
        (
            json!({"type": "attribute", "params": {"key": "age", "op": "gt", "value": "old"}}),
            "/conditions/params/value",
            "type_mismatch",
        ),
        (
            json!({"any": [{"type": "tag", "params": {"op": "has_any", "tags": "vip"}}]}),
            "/conditions/any/0/params/tags",
            "invalid",
        ),
        (
            json!({"type": "tag", "params": {"op": "has_some", "tags": ["a"]}}),
            "/conditions/params/op",
            "unknown_operator",
        ),
        (
            json!({"type": "tag", "params": {"op": "has_any", "tags": []}}),
            "/conditions/params/tags",
            "size",
        ),
        (
            json!({"type": "segment", "params": {"op": "member_of", "segment_id": 987_654}}),
            "/conditions/params/segment_id",
            "unknown_segment",
        ),
        (
            json!({"all": {"type": "opt_in"}}),
            "/conditions/all",
            "invalid_node",
        ),
        (json!({"all": [], "any": []}), "/conditions", "invalid_node"),
        (json!([1]), "/conditions", "invalid_node"),
        (deep, "/conditions/not/not/not/not/not", "too_deep"),
        (
            json!({"any": wide}),
            "/conditions/any/100",
            "too_many_conditions",
        ),
    ];
    for (tree, pointer, code) in cases {
        let problem = app
            .post(
                "/v1/segments",
                json!({"name": "bad", "kind": "dynamic", "conditions": tree.clone()}),
            )
            .await
            .problem(422);
        assert_eq!(
            Reply::pointers(&problem),
            vec![pointer.to_owned()],
            "{tree}"
        );
        assert_eq!(problem["errors"][0]["code"], code, "{tree}");
        // The same validation guards previews and searches.
        let problem = app
            .post("/v1/segments/preview", json!({"conditions": tree.clone()}))
            .await
            .problem(422);
        assert_eq!(
            Reply::pointers(&problem),
            vec![pointer.to_owned()],
            "{tree}"
        );
    }
    // Self-references and cycles are refused when saving, naming the cycle.
    let me = dynamic(
        &app,
        "me",
        json!({"type": "segment", "params": {"op": "member_of", "segment_id": other}}),
    )
    .await;
    let me_id = me["id"].as_i64().unwrap();
    let own = json!({"conditions": {"type": "segment", "params": {"op": "not_member_of", "segment_id": me_id}}});
    let problem = app
        .patch(&format!("/v1/segments/{me_id}"), own)
        .await
        .problem(422);
    assert_eq!(problem["errors"][0]["code"], "self_reference");
    let back = json!({"conditions": {"type": "segment", "params": {"op": "member_of", "segment_id": me_id}}});
    let problem = app
        .patch(&format!("/v1/segments/{other}"), back)
        .await
        .problem(422);
    assert_eq!(problem["errors"][0]["code"], "cycle");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("{other} → {me_id} → {other}")),
        "{problem}"
    );
    // A segment others refer to cannot be deleted.
    let problem = app
        .delete(&format!("/v1/segments/{other}"))
        .await
        .problem(409);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&me_id.to_string())
    );
    // Kinds and conditions must agree (the spec's oneOf on `kind`), and
    // every shape error still points at its field.
    let shape_cases = [
        (
            json!({"name": "x", "kind": "dynamic"}),
            "/conditions",
            "required",
        ),
        (
            json!({"name": "x", "kind": "dynamic", "conditions": null}),
            "/conditions",
            "required",
        ),
        (
            json!({"name": "x", "kind": "static", "conditions": tag_has_any(&["a"])}),
            "/conditions",
            "unknown_field",
        ),
        (json!({"name": 5, "kind": "static"}), "/name", "wrong_type"),
        (
            json!({"name": "x", "kind": "static", "colour": 1}),
            "/colour",
            "unknown_field",
        ),
        (
            json!({"name": "x", "kind": "sometimes"}),
            "/kind",
            "invalid",
        ),
        (json!({"name": "x"}), "/kind", "required"),
    ];
    for (body, pointer, code) in shape_cases {
        let problem = app.post("/v1/segments", body.clone()).await.problem(422);
        assert_eq!(
            Reply::pointers(&problem),
            vec![pointer.to_owned()],
            "{body}"
        );
        assert_eq!(problem["errors"][0]["code"], code, "{body}");
    }
    app.post(
        "/v1/segments",
        json!({"name": "quiet", "kind": "static", "conditions": null}),
    )
    .await
    .expect(201);
    app.stop().await;
}

/// JSON Schema counts `2.0` as an integer, and so does the API: integers
/// written with a zero fraction are read as integers, in bodies and inside
/// condition trees; a real fraction is still refused where it points.
async fn integers_may_be_written_with_a_zero_fraction(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ana = app.contact(json!({"name": "Ana", "tags": ["vip"]})).await["id"]
        .as_i64()
        .unwrap();
    let got = app
        .post("/v1/contacts/batch-get", json!({"ids": [ana as f64]}))
        .await
        .expect(200);
    assert_eq!(got["items"][0]["id"], ana, "{got}");
    let vips = dynamic(&app, "vips", tag_has_any(&["vip"])).await["id"]
        .as_i64()
        .unwrap();
    let tree = json!({"all": [
        {"type": "segment", "params": {"op": "member_of", "segment_id": vips as f64}},
        {"type": "first_contacted", "params": {"op": "more_than_days_ago", "days": 0.0}},
    ]});
    let preview = app
        .post(
            "/v1/segments/preview",
            json!({"conditions": tree, "limit": 5.0}),
        )
        .await
        .expect(200);
    assert!(preview["count"].is_u64(), "{preview}");
    let problem = app
        .post("/v1/contacts/batch-get", json!({"ids": [ana, 1.5]}))
        .await
        .problem(422);
    assert_eq!(Reply::pointers(&problem), vec!["/ids/1".to_owned()]);
    let problem = app
        .post(
            "/v1/segments/preview",
            json!({"conditions": {"type": "segment", "params": {"op": "member_of", "segment_id": 1.5}}}),
        )
        .await
        .problem(422);
    assert_eq!(
        Reply::pointers(&problem),
        vec!["/conditions/params/segment_id".to_owned()]
    );
    // An integer literal beyond the 64-bit range is not rounded into it.
    app.raw(
        reqwest::Method::POST,
        "/v1/contacts/batch-get",
        "application/json",
        br#"{"ids": [-9223372036854775809]}"#.to_vec(),
    )
    .await
    .problem(422);
    app.stop().await;
}

async fn unknown_tags_are_allowed_and_match_once_they_exist(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seg = dynamic(&app, "future", tag_has_any(&["launch-2027"])).await;
    assert_eq!(seg["member_count"], 0);
    app.contact(json!({"tags": ["Launch-2027"]})).await;
    assert_eq!(count(&app, &seg["id"]).await, 1);
    app.stop().await;
}

async fn preview_counts_and_samples_without_saving(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for i in 0..5 {
        app.contact(
            json!({"name": format!("c{i}"), "channel": if i < 3 { "sms" } else { "email" }}),
        )
        .await;
    }
    let tree = json!({"type": "channel", "params": {"op": "in", "channels": ["sms"]}});
    let preview = app
        .post(
            "/v1/segments/preview",
            json!({"conditions": tree, "limit": 2}),
        )
        .await
        .expect(200);
    assert_eq!(preview["count"], 3);
    assert_eq!(preview["contacts"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.get("/v1/segments").await.expect(200)["items"],
        json!([])
    );
    app.post(
        "/v1/segments/preview",
        json!({"conditions": tree, "limit": 101}),
    )
    .await
    .problem(422);
    app.stop().await;
}

async fn explain_shows_why_a_contact_is_or_is_not_a_member(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.attribute("plan", "text").await;
    let c = app
        .contact(json!({"tags": ["vip"], "opted_in": false, "attributes": {"plan": "gold"}}))
        .await;
    let tree = json!({"all": [
        tag_has_any(&["vip"]),
        {"type": "opt_in", "params": {"opted_in": true}},
        {"not": {"type": "attribute", "params": {"key": "plan", "op": "eq", "value": "free"}}}
    ]});
    let seg = dynamic(&app, "engaged VIPs", tree).await;
    let why = app
        .get(&format!(
            "/v1/segments/{}/explain?contact_id={}",
            seg["id"], c["id"]
        ))
        .await
        .expect(200);
    assert_eq!(why["member"], false);
    assert_eq!(why["tree"]["node"], "all");
    let results: Vec<_> = why["tree"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["result"].clone())
        .collect();
    assert_eq!(results, vec![json!(true), json!(false), json!(true)]);
    assert_eq!(why["tree"]["children"][2]["children"][0]["result"], false);
    app.get(&format!(
        "/v1/segments/{}/explain?contact_id=987654321",
        seg["id"]
    ))
    .await
    .problem(404);
    app.get(&format!("/v1/segments/{}/explain", seg["id"]))
        .await
        .problem(400);
    app.stop().await;
}

async fn search_takes_a_tree_and_or_a_segment(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let a = app
        .contact(json!({"tags": ["vip"], "channel": "sms"}))
        .await["id"]
        .clone();
    app.contact(json!({"tags": ["vip"], "channel": "email"}))
        .await;
    app.contact(json!({"channel": "sms"})).await;
    let tree = tag_has_any(&["vip"]);
    let found = app
        .post("/v1/contacts/search", json!({"conditions": tree}))
        .await
        .expect(200);
    assert_eq!(found["items"].as_array().unwrap().len(), 2);
    // "Create Dynamic Segment" from the search: the same tree.
    let seg = dynamic(&app, "from search", tree).await;
    assert_eq!(seg["member_count"], 2);
    let sms = json!({"type": "channel", "params": {"op": "in", "channels": ["sms"]}});
    let both = app
        .post(
            "/v1/contacts/search",
            json!({"conditions": sms, "segment_id": seg["id"]}),
        )
        .await
        .expect(200);
    let ids: Vec<_> = both["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(ids, vec![a]);
    let page = app
        .post("/v1/contacts/search", json!({"limit": 2}))
        .await
        .expect(200);
    assert!(page["next_cursor"].is_string());
    let problem = app
        .post("/v1/contacts/search", json!({"segment_id": 987_654}))
        .await
        .problem(422);
    assert_eq!(Reply::pointers(&problem), vec!["/segment_id"]);
    app.stop().await;
}

async fn relative_dates_are_measured_from_now(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let now = chrono::Utc::now();
    let recent = app
        .contact(json!({"first_contacted_at": (now - chrono::Duration::days(1)).to_rfc3339()}))
        .await;
    app.contact(json!({"first_contacted_at": (now - chrono::Duration::days(8)).to_rfc3339()}))
        .await;
    app.contact(json!({})).await;
    let tree = json!({"type": "first_contacted", "params": {"op": "within_last_days", "days": 7}});
    let found = app
        .post("/v1/contacts/search", json!({"conditions": tree}))
        .await
        .expect(200);
    let ids: Vec<_> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(ids, vec![recent["id"].clone()]);
    let older =
        json!({"type": "first_contacted", "params": {"op": "more_than_days_ago", "days": 7}});
    let found = app
        .post("/v1/contacts/search", json!({"conditions": older}))
        .await
        .expect(200);
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn segments_of_other_workspaces_are_invisible(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seg = dynamic(&app, "mine", tag_has_any(&["a"])).await;
    let id = seg["id"].clone();
    let intruder = app.other_workspace().await;
    use reqwest::Method;
    for (method, path, body) in [
        (Method::GET, format!("/v1/segments/{id}"), None),
        (
            Method::PATCH,
            format!("/v1/segments/{id}"),
            Some(json!({"name": "x"})),
        ),
        (Method::DELETE, format!("/v1/segments/{id}"), None),
        (Method::GET, format!("/v1/segments/{id}/members"), None),
        (
            Method::GET,
            format!("/v1/segments/{id}/explain?contact_id=1"),
            None,
        ),
    ] {
        app.call_as(&intruder, method, &path, body)
            .await
            .problem(404);
    }
    let reference = json!({"type": "segment", "params": {"op": "member_of", "segment_id": id}});
    app.call_as(
        &intruder,
        Method::POST,
        "/v1/segments/preview",
        Some(json!({"conditions": reference})),
    )
    .await
    .problem(422);
    app.stop().await;
}

/// The catalog's rules hold when the edits that would break them race:
/// A → B and B → A at the same moment cannot both be saved (a cycle), and a
/// segment cannot be deleted while another starts referring to it.
async fn catalog_rules_hold_under_concurrent_edits(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tag = json!({"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}});
    let refer =
        |id: i64| json!({"type": "segment", "params": {"op": "member_of", "segment_id": id}});
    let shared = &app;
    let create = |name: String| {
        let body = json!({"name": name, "kind": "dynamic", "conditions": tag.clone()});
        async move {
            shared.post("/v1/segments", body).await.expect(201)["id"]
                .as_i64()
                .unwrap()
        }
    };
    for round in 0..10 {
        let a = create(format!("a{round}")).await;
        let b = create(format!("b{round}")).await;
        let (path_a, path_b) = (format!("/v1/segments/{a}"), format!("/v1/segments/{b}"));
        let (ab, ba) = tokio::join!(
            app.patch(&path_a, json!({"conditions": refer(b)})),
            app.patch(&path_b, json!({"conditions": refer(a)})),
        );
        let mut statuses = [ab.status.as_u16(), ba.status.as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 422], "round {round}: {ab:?} {ba:?}");
        let refused = if ab.status == 422 { ab } else { ba };
        assert_eq!(refused.body["errors"][0]["code"], "cycle", "{refused:?}");

        let c = create(format!("c{round}")).await;
        let path_c = format!("/v1/segments/{c}");
        let (refers, deleted) = tokio::join!(
            app.patch(&path_a, json!({"conditions": refer(c)})),
            app.delete(&path_c),
        );
        match (refers.status.as_u16(), deleted.status.as_u16()) {
            // The reference came first: the delete is refused.
            (200, 409) => {}
            // The delete came first: the reference names a missing segment.
            (422, 204) => {}
            other => panic!("round {round}: {other:?}: {refers:?} {deleted:?}"),
        }
    }
    app.stop().await;
}

/// A tree within its own limits can still refer to segments that refer to
/// others: what evaluation costs is the expansion. Saving bounds it — the
/// conditions once references are inlined, and the length of a reference
/// chain, also when an edit deep in a chain lengthens its dependents'.
async fn references_cannot_expand_past_the_limits(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let tags: Vec<_> = (0..100)
        .map(|i| json!({"type": "tag", "params": {"op": "has_any", "tags": [format!("t{i}")]}}))
        .collect();
    let l1 = app
        .post(
            "/v1/segments",
            json!({"name": "l1", "kind": "dynamic", "conditions": {"any": tags}}),
        )
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let refer =
        |id: i64| json!({"type": "segment", "params": {"op": "member_of", "segment_id": id}});
    let wide: Vec<_> = (0..100).map(|_| refer(l1)).collect();
    for (path, body) in [
        (
            "/v1/segments",
            json!({"name": "l2", "kind": "dynamic", "conditions": {"any": wide}}),
        ),
        ("/v1/segments/preview", json!({"conditions": {"any": wide}})),
    ] {
        let problem = app.post(path, body).await.problem(422);
        assert_eq!(problem["errors"][0]["code"], "too_large", "{problem}");
        assert_eq!(problem["errors"][0]["pointer"], "/conditions", "{problem}");
    }
    let search = app
        .post("/v1/contacts/search", json!({"conditions": {"any": wide}}))
        .await
        .problem(422);
    assert_eq!(search["errors"][0]["code"], "too_large", "{search}");

    // A chain of 32 segments is the longest there may be.
    let tag = json!({"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}});
    let first = app
        .post(
            "/v1/segments",
            json!({"name": "c1", "kind": "dynamic", "conditions": tag}),
        )
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let mut last = first;
    for i in 2..=32 {
        last = app
            .post(
                "/v1/segments",
                json!({"name": format!("c{i}"), "kind": "dynamic", "conditions": refer(last)}),
            )
            .await
            .expect(201)["id"]
            .as_i64()
            .unwrap();
    }
    let problem = app
        .post(
            "/v1/segments",
            json!({"name": "c33", "kind": "dynamic", "conditions": refer(last)}),
        )
        .await
        .problem(422);
    assert_eq!(problem["errors"][0]["code"], "too_deep", "{problem}");
    // Lengthening the chain from its far end is refused too: the segment at
    // its top would be 33 deep.
    let extra = app
        .post(
            "/v1/segments",
            json!({"name": "x", "kind": "dynamic", "conditions": tag}),
        )
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let problem = app
        .patch(
            &format!("/v1/segments/{first}"),
            json!({"conditions": refer(extra)}),
        )
        .await
        .problem(422);
    assert_eq!(problem["errors"][0]["code"], "too_deep", "{problem}");
    assert!(
        problem["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("segment {last}")),
        "{problem}"
    );
    // The top of the chain is still searched and counted.
    app.post("/v1/contacts/search", json!({"segment_id": last}))
        .await
        .expect(200);
    app.get(&format!("/v1/segments/{last}")).await.expect(200);
    app.stop().await;
}

on_both_backends!(
    references_cannot_expand_past_the_limits,
    catalog_rules_hold_under_concurrent_edits,
    condition_types_are_listed_with_their_schemas,
    dynamic_membership_follows_the_data_immediately,
    static_members_are_added_by_id_and_by_name,
    bad_trees_are_refused_with_the_offending_node,
    unknown_tags_are_allowed_and_match_once_they_exist,
    preview_counts_and_samples_without_saving,
    explain_shows_why_a_contact_is_or_is_not_a_member,
    search_takes_a_tree_and_or_a_segment,
    relative_dates_are_measured_from_now,
    segments_of_other_workspaces_are_invisible,
    integers_may_be_written_with_a_zero_fraction,
);
