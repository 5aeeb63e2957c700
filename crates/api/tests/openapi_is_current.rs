//! The checked-in spec is what SDKs are generated from: it must be exactly
//! what the code produces.

#[test]
fn the_checked_in_openapi_document_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/openapi.json");
    let generated = segments_api::openapi::document();
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
    let doc: serde_json::Value =
        serde_json::from_str(&segments_api::openapi::document()).unwrap_or_default();
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
    let doc: serde_json::Value =
        serde_json::from_str(&segments_api::openapi::document()).unwrap_or_default();
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
