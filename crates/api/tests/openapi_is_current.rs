//! The checked-in spec is what SDKs are generated from: it must be exactly
//! what the code produces.

#[test]
fn the_checked_in_openapi_document_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/openapi.json");
    let generated = segments_api::openapi::document(&segments_conditions::Registry::builtin());
    if std::env::var_os("SEGMENTS_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "openapi/openapi.json is stale: regenerate it with `cargo run -p segments -- openapi > openapi/openapi.json` \
         (or run this test with SEGMENTS_UPDATE_OPENAPI=1)"
    );
}

#[test]
fn every_operation_documents_its_errors_as_problems() {
    let doc: serde_json::Value = serde_json::from_str(&segments_api::openapi::document(
        &segments_conditions::Registry::builtin(),
    ))
    .unwrap_or_default();
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    assert!(paths.len() > 10);
    for (path, item) in paths {
        for (method, op) in item.as_object().cloned().unwrap_or_default() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let responses = op["responses"].as_object().cloned().unwrap_or_default();
            assert!(responses.contains_key("401"), "{method} {path} lacks 401");
            assert_eq!(
                op["security"][0]["api_key"],
                serde_json::json!([]),
                "{method} {path}"
            );
            assert!(responses.contains_key("429"), "{method} {path} lacks 429");
            assert!(
                responses["429"]["headers"]["Retry-After"].is_object(),
                "{method} {path} 429 lacks Retry-After"
            );
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"]["application/problem+json"]["schema"]["$ref"]
                            .as_str()
                            .is_some_and(|r| r.ends_with("/Problem")),
                        "{method} {path} {status} is not a Problem"
                    );
                }
            }
        }
    }
}

/// Swagger UI keys "Try it out" by operationId and generators name SDK
/// methods after it: ids repeated across the document made `GET
/// /v1/contacts` run `GET /v1/api-keys`, and numbered methods (`list5`)
/// renamed themselves whenever a route was added. Each id is unique, says
/// what it does (verb first, then the resource), and once published stays.
#[test]
fn operation_ids_are_unique_and_say_what_they_do() {
    let doc: serde_json::Value = serde_json::from_str(&segments_api::openapi::document(
        &segments_conditions::Registry::builtin(),
    ))
    .unwrap_or_default();
    let mut seen = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().cloned().unwrap_or_default() {
        for (method, op) in item.as_object().cloned().unwrap_or_default() {
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            let verb_first = [
                "list", "get", "create", "update", "delete", "add", "remove", "set", "unset",
                "search", "preview", "explain", "rebuild", "revoke", "rename", "apply", "batch",
                "bulk",
            ]
            .iter()
            .any(|verb| {
                id.strip_prefix(verb)
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
            });
            assert!(verb_first, "{method} {path}: operationId {id:?}");
            if let Some(other) = seen.insert(id.clone(), format!("{method} {path}")) {
                panic!("operationId {id} names both {other} and {method} {path}");
            }
        }
    }
    // Published ids stay: these are what generated SDKs call.
    for id in [
        "listContacts",
        "createContact",
        "createSegment",
        "addSegmentMembers",
        "listApiKeys",
    ] {
        assert!(seen.contains_key(id), "{id} disappeared");
    }
}

/// Where the server takes a known shape, the spec says which: a bare
/// `{"type": "object"}` (or values of any type) makes generated clients
/// hand-write types and refuse valid input (`{"value": 25}` needed a cast).
/// The one exception is a JSON Schema document itself.
#[test]
fn no_schema_is_an_untyped_object() {
    fn walk(value: &serde_json::Value, at: &str, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(object) => {
                let shaped = [
                    "properties",
                    "oneOf",
                    "anyOf",
                    "allOf",
                    "$ref",
                    "additionalProperties",
                ]
                .iter()
                .any(|k| object.contains_key(*k));
                let is_object = object.get("type") == Some(&serde_json::json!("object"));
                let untyped_values = matches!(
                    object.get("additionalProperties"),
                    Some(serde_json::Value::Bool(true))
                ) || object.get("additionalProperties")
                    == Some(&serde_json::json!({}));
                if (is_object && !shaped) || untyped_values {
                    found.push(at.to_owned());
                }
                for (key, child) in object {
                    walk(child, &format!("{at}/{key}"), found);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, &format!("{at}/{i}"), found);
                }
            }
            _ => {}
        }
    }
    let doc: serde_json::Value = serde_json::from_str(&segments_api::openapi::document(
        &segments_conditions::Registry::builtin(),
    ))
    .unwrap_or_default();
    let mut found = Vec::new();
    walk(&doc, "", &mut found);
    // A condition type's `params_schema` is a JSON Schema: any object.
    found.retain(|at| at != "/components/schemas/ConditionType/properties/params_schema");
    assert!(found.is_empty(), "untyped objects at {found:#?}");
    // And the tree is a tree: groups and one leaf per condition type.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["ConditionTree"]["oneOf"].as_array().map(Vec::len),
        Some(4)
    );
    for name in [
        "attribute",
        "channel",
        "first_contacted",
        "opt_in",
        "segment",
        "tag",
    ] {
        assert!(
            schemas["ConditionLeaf"]["discriminator"]["mapping"][name].is_string(),
            "{name} is not a leaf of the tree"
        );
    }
}
