//! A third-party condition type, registered the way the built-ins are, used
//! end to end through the HTTP API.

use segments_api::HttpSettings;
use segments_conditions::RegistryBuilder;
use segments_plugin_email_domain::EmailDomainCondition;
use segments_tests::{Backend, Reply, TestApp, on_both_backends};
use serde_json::json;

async fn the_email_domain_plugin_works_through_the_api(backend: Backend) {
    let mut builder = RegistryBuilder::new();
    segments_conditions::builtin::register_all(&mut builder);
    builder.register(EmailDomainCondition).unwrap();
    let app = TestApp::spawn_full(backend, HttpSettings::default(), builder.build()).await;

    let types = app.get("/v1/condition-types").await.expect(200);
    let listed = types["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "email_domain")
        .cloned()
        .expect("the plugin is listed");

    // The served document describes the plugin's leaf with the schema the
    // type list gives, in the tree every segment field refers to; the
    // checked-in document (built-ins only) does not.
    let spec = app.get("/openapi.json").await.expect(200);
    let schemas = &spec["components"]["schemas"];
    assert_eq!(
        schemas["EmailDomainConditionParams"],
        listed["params_schema"]
    );
    assert_eq!(
        schemas["EmailDomainCondition"]["properties"]["type"]["enum"],
        json!(["email_domain"])
    );
    assert_eq!(
        schemas["ConditionLeaf"]["discriminator"]["mapping"]["email_domain"],
        "#/components/schemas/EmailDomainCondition"
    );
    assert!(
        schemas["ConditionLeaf"]["oneOf"]
            .as_array()
            .unwrap()
            .contains(&json!({"$ref": "#/components/schemas/EmailDomainCondition"}))
    );
    let builtin = segments_api::openapi::document(&segments_conditions::Registry::builtin());
    assert!(!builtin.contains("EmailDomainCondition"));

    app.contact(json!({"email": "ana@Example.com"})).await;
    app.contact(json!({"email": "bo@example.org"})).await;
    app.contact(json!({"email": "cy@mail.example.com"})).await;
    app.contact(json!({})).await;
    let tree = json!({"all": [
        {"type": "email_domain", "params": {"domains": ["EXAMPLE.COM", "mail.example.com"]}},
        {"type": "opt_in", "params": {"opted_in": false}}
    ]});
    let seg = app
        .post(
            "/v1/segments",
            json!({"name": "example.com", "kind": "dynamic", "conditions": tree}),
        )
        .await
        .expect(201);
    assert_eq!(seg["member_count"], 2);
    let members = app
        .get(&format!("/v1/segments/{}/members", seg["id"]))
        .await
        .expect(200);
    let emails: Vec<_> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["email"].clone())
        .collect();
    assert_eq!(
        emails,
        vec![json!("ana@example.com"), json!("cy@mail.example.com")]
    );

    let bad = json!({"type": "email_domain", "params": {"domains": ["not a domain"]}});
    let problem = app
        .post("/v1/segments/preview", json!({"conditions": bad}))
        .await
        .problem(422);
    assert_eq!(
        Reply::pointers(&problem),
        vec!["/conditions/params/domains/0"]
    );
    app.stop().await;
}

async fn without_the_plugin_its_type_is_unknown(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let spec = app.get("/openapi.json").await.expect(200);
    assert!(spec["components"]["schemas"]["EmailDomainCondition"].is_null());
    let tree = json!({"type": "email_domain", "params": {"domains": ["example.com"]}});
    let problem = app
        .post("/v1/segments/preview", json!({"conditions": tree}))
        .await
        .problem(422);
    assert_eq!(problem["errors"][0]["code"], "unknown_condition_type");
    app.stop().await;
}

on_both_backends!(
    the_email_domain_plugin_works_through_the_api,
    without_the_plugin_its_type_is_unknown
);
