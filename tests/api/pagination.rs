use std::collections::HashSet;

use segments_tests::{Backend, TestApp, on_both_backends};
use serde_json::{Value, json};

/// A client pages through contacts while another client keeps inserting:
/// every contact that existed before paging began is seen exactly once,
/// and no contact is ever seen twice.
async fn pages_are_stable_while_rows_are_inserted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let contacts: Vec<Value> = (0..300)
        .map(|i| json!({"external_id": format!("p{i}")}))
        .collect();
    app.post("/v1/contacts/bulk-upsert", json!({"contacts": contacts}))
        .await
        .expect(200);
    let existing: HashSet<i64> = {
        let page = app.get("/v1/contacts?limit=1000").await.expect(200);
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(existing.len(), 300);

    let writer = {
        let client = reqwest::Client::new();
        let url = format!("{}/v1/contacts", app.address);
        let key = app.key.clone();
        tokio::spawn(async move {
            for i in 0..60 {
                let r = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"external_id": format!("late{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        })
    };

    let mut seen = Vec::new();
    let mut path = "/v1/contacts?limit=7".to_owned();
    loop {
        let page = app.get(&path).await.expect(200);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/contacts?limit=7&cursor={c}"),
            None => break,
        }
    }
    writer.await.unwrap();
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a contact was returned twice");
    assert!(
        existing.is_subset(&unique),
        "a contact that existed was skipped"
    );
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, seen, "pages are not in id order");
    app.stop().await;
}

async fn page_sizes_and_cursors_are_checked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=x",
        "cursor=%%%",
        "cursor=bm9wZQ",
    ] {
        let problem = app.get(&format!("/v1/contacts?{bad}")).await.problem(400);
        assert!(
            problem["errors"][0]["parameter"].is_string(),
            "{bad}: {problem}"
        );
    }
    app.stop().await;
}

on_both_backends!(
    pages_are_stable_while_rows_are_inserted,
    page_sizes_and_cursors_are_checked
);
