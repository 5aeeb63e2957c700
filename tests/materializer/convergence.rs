//! Thousands of random writes from concurrent clients — single writes, bulk
//! upserts and bulk tagging of hundreds to thousands of contacts in random
//! orders, tag renames — racing full rebuilds and condition edits, with two
//! workers and the reconciler off: every request answers 2xx, and once
//! writes stop every set equals the SQL evaluation of its segment and no
//! live key expires.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use segments_tests::{Backend, TestApp, on_both_backends};
use serde_json::{Value, json};

use crate::{REDIS, converged};

const TAGS: [&str; 4] = ["vip", "new", "promo", "churn"];

/// Contacts loaded in bulk at the start, by external id `b<i>`.
const BULK: usize = 3_000;

fn random_write(
    rng: &mut StdRng,
    contacts: &[i64],
    statik: i64,
    promo_tag: i64,
) -> (reqwest::Method, String, Option<Value>) {
    let c = contacts[rng.random_range(0..contacts.len())];
    let tag = TAGS[rng.random_range(0..TAGS.len())];
    use reqwest::Method;
    match rng.random_range(0..24) {
        // A bulk upsert of hundreds to thousands of contacts, in random order.
        8 => {
            let n = rng.random_range(300..1_500);
            let items: Vec<Value> = (0..n)
                .map(|_| {
                    json!({
                        "external_id": format!("b{}", rng.random_range(0..BULK)),
                        "opted_in": rng.random_bool(0.5),
                        "tags": [TAGS[rng.random_range(0..TAGS.len())]],
                        "attributes": {"score": rng.random_range(0..100)}
                    })
                })
                .collect();
            let mut seen = std::collections::HashSet::new();
            let items: Vec<Value> = items
                .into_iter()
                .filter(|i| seen.insert(i["external_id"].clone()))
                .collect();
            (
                Method::POST,
                "/v1/contacts/bulk-upsert".into(),
                Some(json!({ "contacts": items })),
            )
        }
        // Tagging hundreds of contacts at once.
        9 => {
            let ids: Vec<i64> = (0..300)
                .map(|_| contacts[rng.random_range(0..contacts.len())])
                .collect();
            let path = if rng.random_bool(0.5) {
                "/v1/tags/apply"
            } else {
                "/v1/tags/remove"
            };
            (
                Method::POST,
                path.into(),
                Some(json!({"contact_ids": ids, "tags": [tag]})),
            )
        }
        // Renaming a tag that a segment reads changes every contact carrying it.
        10 => {
            // A fresh name each time: its old name `promo` is soon taken
            // again by writes that create the tag anew.
            let name = format!("promo-{:x}", rng.random::<u64>());
            (
                Method::PATCH,
                format!("/v1/tags/{promo_tag}"),
                Some(json!({ "name": name })),
            )
        }
        0 => (
            Method::POST,
            format!("/v1/contacts/{c}/tags"),
            Some(json!({"tags": [tag]})),
        ),
        1 => (
            Method::POST,
            format!("/v1/contacts/{c}/tags/remove"),
            Some(json!({"tags": [tag]})),
        ),
        2 => (
            Method::PUT,
            format!("/v1/contacts/{c}/attributes/score"),
            Some(json!({"value": rng.random_range(0..100)})),
        ),
        3 => (
            Method::PATCH,
            format!("/v1/contacts/{c}"),
            Some(json!({"opted_in": rng.random_bool(0.5)})),
        ),
        4 => (
            Method::POST,
            format!("/v1/segments/{statik}/members"),
            Some(json!({"contact_ids": [c]})),
        ),
        5 => (
            Method::POST,
            format!("/v1/segments/{statik}/members/remove"),
            Some(json!({"contact_ids": [c]})),
        ),
        6 => (
            Method::POST,
            "/v1/tags/apply".into(),
            Some(json!({"contact_ids": [c, contacts[0]], "tags": [tag]})),
        ),
        7 | 16..=23 => (
            Method::PUT,
            format!("/v1/contacts/{c}/attributes/score"),
            Some(json!({"value": rng.random_range(0..100)})),
        ),
        _ => (
            Method::POST,
            "/v1/contacts/bulk-upsert".into(),
            Some(
                json!({"contacts": [{"external_id": format!("x{}", rng.random_range(0..20)), "tags": [tag], "attributes": {"score": rng.random_range(0..100)}}]}),
            ),
        ),
    }
}

async fn sets_converge_under_concurrent_writes_rebuilds_and_edits(backend: Backend) {
    converge(TestApp::spawn_materialized(backend, REDIS, 2).await).await;
}

/// The same race with writes that only queue their changes
/// (`redis.apply_before_answering = false`): the coalescer, the queue and
/// the workers alone.
async fn sets_converge_through_the_queue_alone(backend: Backend) {
    converge(TestApp::spawn_queued(backend, REDIS, 2).await).await;
}

async fn converge(app: TestApp) {
    app.attribute("score", "number").await;
    let mut contacts = Vec::new();
    for i in 0..40 {
        contacts.push(
            app.contact(json!({"name": format!("c{i}"), "tags": [TAGS[i % 4]]}))
                .await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let loaded: Vec<Value> = (0..BULK)
        .map(|i| json!({"external_id": format!("b{i}"), "tags": [TAGS[i % 4]]}))
        .collect();
    let loaded = app
        .post("/v1/contacts/bulk-upsert", json!({ "contacts": loaded }))
        .await
        .expect(200);
    contacts.extend(
        loaded["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_i64().unwrap()),
    );
    let promo_tag = app.get("/v1/tags?limit=100").await.expect(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "promo")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let statik = app.segment(json!({"name": "hand", "kind": "static"})).await;
    app.post("/v1/segments", json!({"name": "promo", "kind": "dynamic", "conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["promo"]}}}))
        .await
        .expect(201);
    let tagged = app.segment(json!({"name": "vip", "kind": "dynamic", "conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}})).await;
    let scored = app
        .segment(
            json!({"name": "high", "kind": "dynamic", "conditions": {"all": [
                {"type": "attribute", "params": {"key": "score", "op": "ge", "value": 50}},
                {"type": "opt_in", "params": {"opted_in": true}}
            ]}}),
        )
        .await;
    let nested = app.segment(json!({"name": "nested", "kind": "dynamic", "conditions": {"any": [
            {"type": "segment", "params": {"op": "member_of", "segment_id": statik}},
            {"all": [
                {"type": "segment", "params": {"op": "member_of", "segment_id": tagged}},
                {"not": {"type": "segment", "params": {"op": "member_of", "segment_id": scored}}}
            ]}
        ]}})).await;

    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let client = app.client.clone();
            let base = app.address.clone();
            let key = app.key.clone();
            let contacts = contacts.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(w);
                for _ in 0..250 {
                    let (method, path, body) = random_write(&mut rng, &contacts, statik, promo_tag);
                    let mut request = client
                        .request(method, format!("{base}{path}"))
                        .bearer_auth(&key);
                    if let Some(body) = body {
                        request = request.json(&body);
                    }
                    let response = request.send().await.unwrap();
                    let status = response.status();
                    if !status.is_success() {
                        let body = response.text().await.unwrap_or_default();
                        panic!("{path}: {status}: {body}");
                    }
                }
            })
        })
        .collect();
    let editor = {
        let client = app.client.clone();
        let base = app.address.clone();
        let key = app.key.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                let threshold = if i % 2 == 0 { 30 } else { 60 };
                let conditions = json!({"all": [
                    {"type": "attribute", "params": {"key": "score", "op": "ge", "value": threshold}},
                    {"type": "opt_in", "params": {"opted_in": true}}
                ]});
                let r = client
                    .patch(format!("{base}/v1/segments/{scored}"))
                    .bearer_auth(&key)
                    .json(&json!({"conditions": conditions}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                for segment in [tagged, nested, statik] {
                    let r = client
                        .post(format!("{base}/v1/segments/{segment}/rebuild"))
                        .bearer_auth(&key)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    editor.await.unwrap();
    converged(&app, Duration::from_secs(60)).await;
    let drift = app
        .materialized
        .as_ref()
        .unwrap()
        .materializer
        .verify()
        .await
        .unwrap();
    assert!(drift.iter().all(|d| d.is_clean()), "{drift:?}");
    app.stop().await;
}

on_both_backends!(
    sets_converge_under_concurrent_writes_rebuilds_and_edits,
    sets_converge_through_the_queue_alone
);
