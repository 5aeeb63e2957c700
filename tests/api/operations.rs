//! What operators rely on: Prometheus metrics and per-key rate limiting.

use segments_api::{HttpSettings, RateLimit};
use segments_tests::{Backend, TestApp, metric as sample, on_both_backends};
use serde_json::json;

async fn http_latency_is_recorded_by_route_template(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.contact(json!({"name": "Ada"})).await["id"]
        .as_i64()
        .unwrap();
    let route = r#"route="/v1/contacts/{id}""#;
    let ok = [route, r#"status="200""#, r#"method="GET""#];
    let before = sample(
        &app.metrics().await,
        "http_server_request_duration_seconds_count",
        &ok,
    )
    .unwrap_or(0.0);
    app.get(&format!("/v1/contacts/{id}")).await.expect(200);
    app.get(&format!("/v1/contacts/{id}")).await.expect(200);
    app.get("/v1/contacts/999999999").await.expect(404);
    let exposition = app.metrics().await;
    let after = sample(
        &exposition,
        "http_server_request_duration_seconds_count",
        &ok,
    )
    .unwrap();
    // Other tests share the process's recorder: at least our two requests.
    assert!(after >= before + 2.0, "{before} -> {after}");
    assert!(
        sample(
            &exposition,
            "http_server_request_duration_seconds_count",
            &[route, r#"status="404""#]
        )
        .is_some()
    );
    // Buckets, not a summary, so that latency aggregates across processes.
    assert!(exposition.contains("http_server_request_duration_seconds_bucket{"));
    // The raw path never becomes a label.
    assert!(!exposition.contains(&format!("/v1/contacts/{id}\"")));
    app.stop().await;
}

/// The app with a limit of 1 request/s and bursts of 3 per bucket.
async fn rate_limited(backend: Backend) -> TestApp {
    TestApp::spawn_with(
        backend,
        HttpSettings {
            workers: 2,
            rate_limit: Some(RateLimit {
                requests_per_second: 1,
                burst: 3,
            }),
            ..HttpSettings::default()
        },
    )
    .await
}

async fn each_api_key_has_its_own_rate_limit(backend: Backend) {
    let app = rate_limited(backend).await;
    for _ in 0..3 {
        app.get("/v1/contacts").await.expect(200);
    }
    let limited = app.get("/v1/contacts").await;
    assert_eq!(limited.content_type, "application/problem+json");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    let problem = limited.problem(429);
    assert_eq!(
        problem["type"],
        "https://segments.dev/problems/rate-limited"
    );

    // Another key is not slowed down by the first one's burst.
    let other = app.other_workspace().await;
    let reply = app
        .call_as(&other, reqwest::Method::GET, "/v1/contacts", None)
        .await;
    assert_eq!(reply.status, 200);
    // Probes are never limited.
    for _ in 0..10 {
        app.get("/healthz").await.expect(200);
    }
    // The bucket refills at the sustained rate.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    app.get("/v1/contacts").await.expect(200);
    app.stop().await;
}

/// Made-up tokens share their address's bucket (guessing keys is never
/// faster than the limit), and a key spelled with a lowercase scheme is the
/// same key, in the same bucket.
async fn failed_authentication_and_scheme_spellings_cannot_bypass_the_limit(backend: Backend) {
    let app = rate_limited(backend).await;
    let mut statuses = Vec::new();
    for i in 0..40 {
        let reply = app
            .call_as(
                &format!("sk_made_up_{i:040}"),
                reqwest::Method::GET,
                "/v1/contacts",
                None,
            )
            .await;
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(&statuses[..3], &[401, 401, 401], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");

    // The real key has its own bucket; the scheme's case does not open another.
    for _ in 0..3 {
        app.get("/v1/contacts").await.expect(200);
    }
    let lowercase = app
        .client
        .get(format!("{}/v1/contacts", app.address))
        .header("authorization", format!("bearer {}", app.key))
        .send()
        .await
        .unwrap();
    assert_eq!(lowercase.status(), 429);
    app.stop().await;
}

on_both_backends!(
    failed_authentication_and_scheme_spellings_cannot_bypass_the_limit,
    http_latency_is_recorded_by_route_template,
    each_api_key_has_its_own_rate_limit
);
