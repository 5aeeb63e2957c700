use reqwest::Method;
use segments_tests::{Backend, TestApp, on_both_backends};
use serde_json::json;

async fn keys_are_created_listed_and_revoked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let issued = app
        .post("/v1/api-keys", json!({"name": "sender"}))
        .await
        .expect(201);
    let secret = issued["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(issued["prefix"].as_str().unwrap()));
    let list = app.get("/v1/api-keys").await.expect(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(
        !list.to_string().contains(&secret),
        "a listing must never show secrets"
    );
    // The new key works for the same workspace.
    let c = app.contact(json!({"name": "seen by both"})).await;
    let path = format!("/v1/contacts/{}", c["id"]);
    app.call_as(&secret, reqwest::Method::GET, &path, None)
        .await
        .expect(200);
    // Revoked, it no longer does.
    let id = issued["id"].as_i64().unwrap();
    let revoked = app.delete(&format!("/v1/api-keys/{id}")).await.expect(200);
    assert!(revoked["revoked_at"].is_string());
    app.call_as(&secret, reqwest::Method::GET, &path, None)
        .await
        .problem(401);
    app.stop().await;
}

async fn the_last_active_key_cannot_be_revoked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let list = app.get("/v1/api-keys").await.expect(200);
    let id = list["items"][0]["id"].as_i64().unwrap();
    app.delete(&format!("/v1/api-keys/{id}")).await.problem(409);
    app.get("/v1/contacts").await.expect(200);
    app.stop().await;
}

async fn a_key_cannot_revoke_itself_but_another_can(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let list = app.get("/v1/api-keys").await.expect(200);
    let first = list["items"][0]["id"].as_i64().unwrap();
    let second = app
        .post("/v1/api-keys", json!({"name": "rotation"}))
        .await
        .expect(201);
    let problem = app
        .delete(&format!("/v1/api-keys/{first}"))
        .await
        .problem(409);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("cannot revoke itself")
    );
    // Rotation: the new key revokes the old one.
    let new_secret = second["key"].as_str().unwrap();
    let reply = app
        .call_as(
            new_secret,
            reqwest::Method::DELETE,
            &format!("/v1/api-keys/{first}"),
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    app.get("/v1/contacts").await.problem(401);
    app.stop().await;
}

/// Another API process revoking a key (here: the store, behind this
/// process's back) reaches this one when its cached authentication expires.
async fn a_key_revoked_elsewhere_stops_working_within_the_cache_ttl(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let issued = app
        .post("/v1/api-keys", json!({"name": "elsewhere"}))
        .await
        .expect(201);
    let secret = issued["key"].as_str().unwrap().to_owned();
    app.call_as(&secret, reqwest::Method::GET, "/v1/contacts", None)
        .await
        .expect(200);
    let ws = app.workspace_id().await;
    let id = segments_domain::ApiKeyId(issued["id"].as_i64().unwrap());
    app.store.revoke_api_key(ws, id).await.unwrap();
    // Still trusted from the cache...
    app.call_as(&secret, reqwest::Method::GET, "/v1/contacts", None)
        .await
        .expect(200);
    // ...but not for longer than the cache's lifetime.
    let ttl = segments_api::DEFAULT_AUTH_CACHE_TTL;
    segments_tests::eventually(ttl + std::time::Duration::from_secs(5), || async {
        match app
            .call_as(&secret, reqwest::Method::GET, "/v1/contacts", None)
            .await
            .status
            .as_u16()
        {
            401 => Ok(()),
            other => Err(format!("the revoked key still answers {other}")),
        }
    })
    .await;
    app.stop().await;
}

/// Two keys revoking each other at the same moment: one wins, the other is
/// refused, and the workspace always keeps a working key.
async fn two_keys_revoking_each_other_leave_one(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let list = app.get("/v1/api-keys").await.expect(200);
    let mut survivor = (list["items"][0]["id"].as_i64().unwrap(), app.key.clone());
    for round in 0..12 {
        let issued = app
            .call_as(
                &survivor.1,
                Method::POST,
                "/v1/api-keys",
                Some(json!({"name": format!("k{round}")})),
            )
            .await
            .expect(201);
        let other = (
            issued["id"].as_i64().unwrap(),
            issued["key"].as_str().unwrap().to_owned(),
        );
        let (revoke_other, revoke_survivor) = (
            format!("/v1/api-keys/{}", other.0),
            format!("/v1/api-keys/{}", survivor.0),
        );
        let (a, b) = tokio::join!(
            app.call_as(&survivor.1, Method::DELETE, &revoke_other, None),
            app.call_as(&other.1, Method::DELETE, &revoke_survivor, None),
        );
        let wins = [&a, &b].iter().filter(|r| r.status == 200).count();
        assert_eq!(wins, 1, "round {round}: {a:?} {b:?}");
        for loser in [&a, &b].into_iter().filter(|r| r.status != 200) {
            assert!(matches!(loser.status.as_u16(), 401 | 409), "{loser:?}");
        }
        if b.status == 200 {
            survivor = other;
        }
        let reply = app
            .call_as(&survivor.1, Method::GET, "/v1/api-keys", None)
            .await;
        assert_eq!(
            reply.status, 200,
            "round {round}: the workspace has no working key"
        );
    }
    app.stop().await;
}

on_both_backends!(
    two_keys_revoking_each_other_leave_one,
    a_key_revoked_elsewhere_stops_working_within_the_cache_ttl,
    a_key_cannot_revoke_itself_but_another_can,
    keys_are_created_listed_and_revoked,
    the_last_active_key_cannot_be_revoked
);
