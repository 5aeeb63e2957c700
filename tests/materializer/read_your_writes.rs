//! Every API read reflects every write acknowledged before it began. With
//! no worker running and the reconciler off — nothing but the write's own
//! path can bring a set up to date — 1,000 writes (a contact's tags in and
//! out of a dynamic segment, members in and out of a static one, and now
//! and then 1,500 contacts tagged at once or re-upserted in bulk), each
//! followed at once by reads of the counts, the member list and a
//! contact's segments: no read is stale.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use segments_domain::SegmentId;
use segments_tests::{Backend, TestApp, on_both_backends};
use serde_json::{Value, json};

use crate::{REDIS, differences};

const WRITES: usize = 1_000;
/// Contacts written together by the bulk steps: more than one evaluation
/// batch (1,000).
const BULK: usize = 1_500;

fn ids(items: &Value) -> BTreeSet<i64> {
    items
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["id"].as_i64()).collect())
        .unwrap_or_default()
}

async fn every_read_sees_the_writes_acknowledged_before_it(backend: Backend) {
    // Zero workers: a change the write does not apply itself stays unapplied.
    let app = TestApp::spawn_materialized(backend, REDIS, 0).await;
    let materializer = app.materialized.as_ref().unwrap().materializer.clone();
    let ws = app.workspace_id().await;
    let vip = app
        .segment(json!({"name": "vip", "kind": "dynamic",
                        "conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}}))
        .await;
    let hand = app.segment(json!({"name": "hand", "kind": "static"})).await;
    let mut contacts = Vec::new();
    for i in 0..20 {
        contacts.push(
            app.contact(json!({"name": format!("c{i}")})).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let bulk_items: Vec<Value> = (0..BULK)
        .map(|i| json!({"external_id": format!("b{i}"), "name": format!("b{i}")}))
        .collect();
    let bulk: Vec<i64> = app
        .post("/v1/contacts/bulk-upsert", json!({"contacts": bulk_items}))
        .await
        .expect(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    // What the queued rebuild jobs would do, had a worker taken them.
    for segment in [vip, hand] {
        materializer.rebuild(ws, SegmentId(segment)).await.unwrap();
    }

    let mut rng = StdRng::seed_from_u64(15);
    let mut in_vip = BTreeSet::new();
    let mut in_hand = BTreeSet::new();
    let mut stale = Vec::new();
    for step in 0..WRITES {
        let mut c = contacts[rng.random_range(0..contacts.len())];
        let write = match rng.random_range(0..102) {
            // The bulk contacts all gain the tag, or all lose it by being
            // upserted with a tag set without it.
            100 => {
                in_vip.extend(&bulk);
                c = bulk[rng.random_range(0..bulk.len())];
                app.post(
                    "/v1/tags/apply",
                    json!({"tags": ["vip"], "contact_ids": bulk}),
                )
                .await
            }
            101 => {
                for b in &bulk {
                    in_vip.remove(b);
                }
                c = bulk[rng.random_range(0..bulk.len())];
                let items: Vec<Value> = (0..BULK)
                    .map(|i| json!({"external_id": format!("b{i}"), "tags": ["other"]}))
                    .collect();
                app.post("/v1/contacts/bulk-upsert", json!({"contacts": items}))
                    .await
            }
            0..25 => {
                in_vip.insert(c);
                app.post(&format!("/v1/contacts/{c}/tags"), json!({"tags": ["vip"]}))
                    .await
            }
            25..50 => {
                in_vip.remove(&c);
                app.post(
                    &format!("/v1/contacts/{c}/tags/remove"),
                    json!({"tags": ["vip"]}),
                )
                .await
            }
            50..75 => {
                in_hand.insert(c);
                app.post(
                    &format!("/v1/segments/{hand}/members"),
                    json!({"contact_ids": [c]}),
                )
                .await
            }
            _ => {
                in_hand.remove(&c);
                app.post(
                    &format!("/v1/segments/{hand}/members/remove"),
                    json!({"contact_ids": [c]}),
                )
                .await
            }
        };
        write.expect(200);

        for (segment, expected) in [(vip, &in_vip), (hand, &in_hand)] {
            let read = app
                .get(&format!("/v1/segments/{segment}"))
                .await
                .expect(200);
            assert_eq!(read["membership"]["source"], "materialized", "{read}");
            if read["member_count"] != json!(expected.len()) {
                stale.push(format!(
                    "step {step}: segment {segment} counts {} of {}",
                    read["member_count"],
                    expected.len()
                ));
            }
        }
        // A page of members is whole while the bulk contacts are out.
        if in_vip.len() <= 100 {
            let members = app
                .get(&format!("/v1/segments/{vip}/members?limit=100"))
                .await
                .expect(200);
            if ids(&members["items"]) != in_vip {
                stale.push(format!("step {step}: members of vip {}", members["items"]));
            }
        }
        let of_contact = app
            .get(&format!("/v1/contacts/{c}/segments"))
            .await
            .expect(200);
        let expected: BTreeSet<i64> = [(vip, &in_vip), (hand, &in_hand)]
            .into_iter()
            .filter(|(_, members)| members.contains(&c))
            .map(|(segment, _)| segment)
            .collect();
        if ids(&of_contact["items"]) != expected {
            stale.push(format!(
                "step {step}: contact {c} is in {}",
                of_contact["items"]
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "{} stale reads after {WRITES} writes, first: {:#?}",
        stale.len(),
        &stale[..stale.len().min(10)]
    );
    assert!(differences(&app).await.is_empty());
    app.stop().await;
}

/// An edit's rebuild is a job; until it lands, the set still holds the old
/// definition's members. With no worker to run it, every read after the
/// edit — of the edited segment and of one that refers to it — answers for
/// the new definition (from SQL, saying so), a snapshot refuses to freeze
/// the old audience, and the reconciler rebuilds what was built for an
/// earlier definition, after which the sets answer again.
async fn reads_after_an_edit_answer_for_it_before_its_rebuild_lands(backend: Backend) {
    let app = TestApp::spawn_materialized(backend, REDIS, 0).await;
    let materializer = app.materialized.as_ref().unwrap().materializer.clone();
    let ws = app.workspace_id().await;
    let mut vip = BTreeSet::new();
    let mut new = BTreeSet::new();
    for i in 0..5 {
        let tag = if i < 3 { "vip" } else { "new" };
        let id = app
            .contact(json!({"name": format!("c{i}"), "tags": [tag]}))
            .await["id"]
            .as_i64()
            .unwrap();
        if i < 3 {
            vip.insert(id)
        } else {
            new.insert(id)
        };
    }
    let edited = app
        .segment(json!({"name": "edited", "kind": "dynamic",
                        "conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}}))
        .await;
    let referring = app
        .segment(json!({"name": "referring", "kind": "dynamic",
                        "conditions": {"type": "segment", "params": {"op": "member_of", "segment_id": edited}}}))
        .await;
    for segment in [edited, referring] {
        materializer.rebuild(ws, SegmentId(segment)).await.unwrap();
        let read = app
            .get(&format!("/v1/segments/{segment}"))
            .await
            .expect(200);
        assert_eq!(read["membership"]["source"], "materialized", "{read}");
        assert_eq!(read["membership"]["count"], 3, "{read}");
    }

    app.patch(
        &format!("/v1/segments/{edited}"),
        json!({"conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["new"]}}}),
    )
    .await
    .expect(200);
    for segment in [edited, referring] {
        let read = app
            .get(&format!("/v1/segments/{segment}"))
            .await
            .expect(200);
        assert_eq!(read["membership"]["count"], 2, "segment {segment}: {read}");
        assert_eq!(
            read["membership"]["source"], "sql",
            "segment {segment}: {read}"
        );
        let members = app
            .get(&format!("/v1/segments/{segment}/members"))
            .await
            .expect(200);
        assert_eq!(ids(&members["items"]), new, "segment {segment}");
    }
    for (contacts, expected) in [
        (&vip, BTreeSet::new()),
        (&new, BTreeSet::from([edited, referring])),
    ] {
        for c in contacts {
            let of_contact = app
                .get(&format!("/v1/contacts/{c}/segments"))
                .await
                .expect(200);
            assert_eq!(ids(&of_contact["items"]), expected, "contact {c}");
        }
    }
    let refused = app
        .post(&format!("/v1/segments/{edited}/snapshots"), json!({}))
        .await
        .problem(409);
    assert_eq!(refused["errors"][0]["code"], "building", "{refused}");

    let report = materializer.reconcile().await.unwrap();
    assert_eq!(report.redefined, 2, "{report:?}");
    for segment in [edited, referring] {
        let read = app
            .get(&format!("/v1/segments/{segment}"))
            .await
            .expect(200);
        assert_eq!(read["membership"]["source"], "materialized", "{read}");
        assert_eq!(read["membership"]["count"], 2, "{read}");
    }
    assert!(differences(&app).await.is_empty());
    app.stop().await;
}

/// Renaming or deleting a tag changes the tags of every contact carrying
/// it. With no worker running, the reads after the answer — of a segment
/// on the old name, one on the new name, and the contacts' segments —
/// reflect it, from the sets.
async fn reads_after_a_tag_rename_or_delete_reflect_it(backend: Backend) {
    let app = TestApp::spawn_materialized(backend, REDIS, 0).await;
    let materializer = app.materialized.as_ref().unwrap().materializer.clone();
    let ws = app.workspace_id().await;
    let mut tagged = Vec::new();
    for i in 0..5 {
        let tags = if i < 3 { json!(["vip"]) } else { json!([]) };
        let id = app
            .contact(json!({"name": format!("c{i}"), "tags": tags}))
            .await["id"]
            .as_i64()
            .unwrap();
        if i < 3 {
            tagged.push(id);
        }
    }
    let on = |tag: &str| {
        json!({"name": format!("on {tag}"), "kind": "dynamic",
               "conditions": {"type": "tag", "params": {"op": "has_any", "tags": [tag]}}})
    };
    let vip = app.segment(on("vip")).await;
    let gold = app.segment(on("gold")).await;
    for segment in [vip, gold] {
        materializer.rebuild(ws, SegmentId(segment)).await.unwrap();
    }
    let tags = app.get("/v1/tags").await.expect(200);
    let tag = tags["items"][0]["id"].as_i64().unwrap();
    let counts = async || {
        let mut out = Vec::new();
        for segment in [vip, gold] {
            let read = app
                .get(&format!("/v1/segments/{segment}"))
                .await
                .expect(200);
            assert_eq!(read["membership"]["source"], "materialized", "{read}");
            out.push(read["membership"]["count"].as_u64().unwrap());
        }
        out
    };
    assert_eq!(counts().await, [3, 0]);

    app.patch(&format!("/v1/tags/{tag}"), json!({"name": "gold"}))
        .await
        .expect(200);
    assert_eq!(counts().await, [0, 3], "after the rename");
    let of_contact = app
        .get(&format!("/v1/contacts/{}/segments", tagged[0]))
        .await
        .expect(200);
    assert_eq!(ids(&of_contact["items"]), BTreeSet::from([gold]));

    app.delete(&format!("/v1/tags/{tag}")).await.expect(204);
    assert_eq!(counts().await, [0, 0], "after the deletion");
    assert!(differences(&app).await.is_empty());
    app.stop().await;
}

/// A member listing begun in a set, resumed after the segment's definition
/// changed and before its rebuild landed, is refused rather than continued
/// in SQL (or in the rebuilt set) where it would skip or repeat members;
/// one started again pages SQL and answers for the edit.
async fn a_listing_begun_before_an_edit_is_refused_after_it(backend: Backend) {
    let app = TestApp::spawn_materialized(backend, REDIS, 0).await;
    let materializer = app.materialized.as_ref().unwrap().materializer.clone();
    let ws = app.workspace_id().await;
    // Enough members for SSCAN to page: a set of up to 512 integers is
    // compact, and comes back whole.
    let contacts: Vec<Value> = (0..700)
        .map(|i| json!({"external_id": format!("m{i}"), "tags": [if i < 600 { "vip" } else { "new" }]}))
        .collect();
    app.post("/v1/contacts/bulk-upsert", json!({"contacts": contacts}))
        .await
        .expect(200);
    let segment = app
        .segment(json!({"name": "listed", "kind": "dynamic",
                        "conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["vip"]}}}))
        .await;
    materializer.rebuild(ws, SegmentId(segment)).await.unwrap();
    let first = app
        .get(&format!("/v1/segments/{segment}/members?limit=50"))
        .await
        .expect(200);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    app.patch(
        &format!("/v1/segments/{segment}"),
        json!({"conditions": {"type": "tag", "params": {"op": "has_any", "tags": ["new"]}}}),
    )
    .await
    .expect(200);
    let refused = app
        .get(&format!(
            "/v1/segments/{segment}/members?limit=50&cursor={cursor}"
        ))
        .await
        .problem(409);
    assert_eq!(
        refused["errors"][0]["code"], "definition_changed",
        "{refused}"
    );
    let again = app
        .get(&format!("/v1/segments/{segment}/members?limit=1000"))
        .await
        .expect(200);
    assert_eq!(again["items"].as_array().unwrap().len(), 100, "{again}");
    app.stop().await;
}

on_both_backends!(
    a_listing_begun_before_an_edit_is_refused_after_it,
    every_read_sees_the_writes_acknowledged_before_it,
    reads_after_an_edit_answer_for_it_before_its_rebuild_lands,
    reads_after_a_tag_rename_or_delete_reflect_it
);
