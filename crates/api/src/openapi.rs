//! The OpenAPI document, generated from the handlers and wire types.

use segments_conditions::Registry;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::{Problem, ProblemField};
use crate::wire;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Segments",
        description = "Contacts, tags and custom attributes, grouped into static and dynamic segments.\n\nAuthenticate with `Authorization: Bearer <api key>`; the key decides the workspace. Errors are `application/problem+json` (RFC 9457) with the JSON Pointer of each failing field.",
        license(name = "Apache-2.0")
    ),
    components(schemas(Problem, ProblemField, wire::attribute::AttributeKind)),
    tags(
        (name = "contacts", description = "Contacts, their tags and attribute values"),
        (name = "segments", description = "Static and dynamic segments, condition types, previews and explanations"),
        (name = "tags", description = "Tags across contacts"),
        (name = "attributes", description = "Custom attribute definitions"),
        (name = "api-keys", description = "API keys of the workspace"),
        (name = "health", description = "Liveness and readiness")
    )
)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key, e.g. `seg_…`, as created by `segments workspace create`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Declares what every route can answer besides its own responses: problem
/// documents as `application/problem+json` (what they are sent as), `429`
/// with `Retry-After` on authenticated routes (the rate limiter), and `503`
/// where the database or Redis can be unreachable.
fn problem_responses_everywhere(doc: &mut serde_json::Value) {
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for operation in item.values_mut() {
                problem_responses(operation);
            }
        }
    }
}

fn problem_responses(operation: &mut serde_json::Value) {
    use serde_json::json;
    let secured = operation.get("security").is_some();
    let has_body = operation.get("requestBody").is_some();
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(|r| r.as_object_mut())
    else {
        return;
    };
    let problem = json!({ "$ref": "#/components/schemas/Problem" });
    for (status, response) in responses.iter_mut() {
        // OpenAPI requires a description on every response; utoipa leaves
        // it out when a handler gives none, and strict generators refuse
        // such a document.
        if let Some(object) = response.as_object_mut()
            && !object.contains_key("description")
        {
            object.insert("description".into(), json!(reason(status)));
        }
        let Some(content) = response.get_mut("content").and_then(|c| c.as_object_mut()) else {
            continue;
        };
        if content
            .get("application/json")
            .and_then(|c| c.get("schema"))
            == Some(&problem)
            && let Some(media) = content.remove("application/json")
        {
            content.insert("application/problem+json".into(), media);
        }
    }
    let body = json!({ "application/problem+json": { "schema": problem } });
    let problem_response =
        |description: &str| json!({ "description": description, "content": body.clone() });
    if secured {
        // Every path or query parameter is parsed, and answers 400 when it
        // does not parse; every body can be malformed, too big or not JSON.
        responses
            .entry("400")
            .or_insert_with(|| problem_response("A parameter or the body is malformed"));
        if has_body {
            responses
                .entry("413")
                .or_insert_with(|| problem_response("The body is too large"));
            responses
                .entry("415")
                .or_insert_with(|| problem_response("The body is not JSON"));
        }
        responses
            .entry("401")
            .or_insert_with(|| problem_response("The API key is missing, unknown or revoked"));
        responses.entry("429").or_insert_with(|| {
            json!({
                "description": "Too many requests for this API key",
                "headers": { "Retry-After": {
                    "description": "Seconds to wait before retrying",
                    "schema": { "type": "integer", "minimum": 0 }
                }},
                "content": body.clone()
            })
        });
        responses
            .entry("503")
            .or_insert_with(|| problem_response("The database is unavailable"));
    }
}

/// The standard reason phrase of a status code, as a default description.
fn reason(status: &str) -> String {
    status
        .parse::<u16>()
        .ok()
        .and_then(|code| actix_web::http::StatusCode::from_u16(code).ok())
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Response")
        .to_owned()
}

/// The document for a process whose condition types are `registry`'s:
/// every route, and the condition tree those types accept.
pub fn document_for(registry: &Registry) -> serde_json::Value {
    let mut typed = ApiDoc::openapi();
    typed.merge(crate::routes::Paths::openapi());
    BearerAuth.modify(&mut typed);
    // From here on the document is JSON, and stays JSON: utoipa's typed
    // tree is awkward to walk, and has no room for keywords it does not
    // model (`if`/`then`, `allOf` beside `properties`), which a round trip
    // through it would silently drop. After the merge: these edit routes.
    let mut doc = serde_json::to_value(&typed).unwrap_or_default();
    problem_responses_everywhere(&mut doc);
    crate::openapi_bounds::apply(&mut doc);
    crate::openapi_conditions::apply(&mut doc, registry);
    doc
}

/// The document with the built-in condition types, built once per process
/// (generating it walks every handler and runs the modifiers): what
/// `openapi/openapi.json` holds, and the list of routes that
/// [`allowed_methods`] reads.
pub fn spec() -> &'static serde_json::Value {
    static SPEC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| document_for(&Registry::builtin()))
}

/// The methods the API serves on `path` (a concrete request path), from
/// the spec — the one list of routes — or `None` if no route has it.
pub fn allowed_methods(path: &str) -> Option<Vec<String>> {
    let wanted: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    // Of the templates that fit, the one with the most literal segments:
    // `/v1/contacts/search` is that route, not `/v1/contacts/{id}`.
    let (_, item) = spec()
        .get("paths")
        .and_then(serde_json::Value::as_object)?
        .iter()
        .filter_map(|(template, item)| {
            let parts: Vec<&str> = template.split('/').collect();
            let mut literals = 0;
            let fits = parts.len() == wanted.len()
                && parts.iter().zip(&wanted).all(|(t, w)| {
                    if t.starts_with('{') && t.ends_with('}') {
                        !w.is_empty()
                    } else {
                        literals += 1;
                        t == w
                    }
                });
            fits.then_some((literals, item))
        })
        .max_by_key(|(literals, _)| *literals)?;
    let methods = item.as_object().cloned().unwrap_or_default();
    Some(
        methods
            .keys()
            .filter(|m| {
                matches!(
                    m.as_str(),
                    "get" | "put" | "post" | "delete" | "patch" | "head" | "options"
                )
            })
            .map(|m| m.to_uppercase())
            .collect(),
    )
}

/// `document` as pretty JSON with a trailing newline: the form checked in
/// at `openapi/openapi.json` (with the built-in types).
pub fn document(registry: &Registry) -> String {
    let mut json = serde_json::to_string_pretty(&document_for(registry))
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
}
