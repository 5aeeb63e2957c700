use segments_tests::{Backend, TestApp, on_both_backends};

async fn health_and_readiness_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.get("/healthz").await.expect(200)["status"], "ok");
    let ready = app.get("/readyz").await.expect(200);
    assert_eq!(ready["database"], "ok");
    app.stop().await;
}

async fn swagger_ui_and_the_spec_are_served(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let spec = app.get("/openapi.json").await.expect(200);
    assert!(spec["paths"]["/v1/contacts"].is_object());
    assert!(spec["components"]["securitySchemes"]["api_key"].is_object());
    let ui = app.get("/swagger-ui/").await;
    assert_eq!(ui.status, 200);
    assert!(ui.content_type.starts_with("text/html"));
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/swagger-ui", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.headers()["location"], "/swagger-ui/");
    app.stop().await;
}

on_both_backends!(
    health_and_readiness_answer,
    swagger_ui_and_the_spec_are_served
);
