//! Hostile input on every operation of the spec, generated from the spec
//! itself, so that a new route is covered without editing this file.
//!
//! For each operation a valid request is built from its schema (fixture ids
//! in the path, each required body field given a plain value of its type),
//! then every path parameter, query parameter and body field in turn is
//! replaced by each hostile value of its type: NUL and control characters,
//! case-folding that grows, huge and empty strings, out-of-range and
//! non-integer numbers, impossible dates, wrong types, deep and wide
//! condition trees. Every answer must be below 500, a 4xx must be
//! problem+json, and a refused write must leave the workspace as it was.

use reqwest::Method;
use segments_api::HttpSettings;
use segments_tests::{Backend, TestApp, on_both_backends};
use serde_json::{Map, Value, json};

/// Ids that exist in the test workspace, by path parameter name.
struct Fixtures {
    contact: i64,
    segment: i64,
    tag: i64,
    key: i64,
}

fn hostile_strings() -> Vec<Value> {
    vec![
        json!(""),
        json!(" "),
        json!("a\u{0}b"),
        json!("\u{1}\u{1b}[31m\u{7f}"),
        json!("İ".repeat(33)),
        json!("ß".repeat(120)),
        json!("x".repeat(20_000)),
        json!("😀".repeat(70)),
        json!("\u{202e}evil\u{200b}"),
        json!("' OR 1=1; --"),
        json!("%00%2e%2e%2f"),
        json!("\u{fffd}\u{fffe}"),
        json!(12),
        json!(["x"]),
        json!({"x": 1}),
    ]
}

fn hostile_dates() -> Vec<Value> {
    vec![
        json!("1969-12-31T23:59:60Z"),
        json!("0000-01-01T00:00:00Z"),
        json!("99999-01-01T00:00:00Z"),
        json!("2024-02-30T00:00:00Z"),
        json!("2024-1-1"),
        json!("yesterday"),
        json!(""),
        json!(1_700_000_000),
    ]
}

fn hostile_numbers() -> Vec<Value> {
    vec![
        json!(-1),
        json!(0),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(1.5),
        json!(1e308),
        json!("1"),
        json!(true),
    ]
}

fn hostile_trees() -> Vec<Value> {
    let leaf = json!({"type": "tag", "params": {"op": "has_any", "tags": ["x"]}});
    let mut deep = leaf.clone();
    for _ in 0..300 {
        deep = json!({"not": deep});
    }
    vec![
        deep,
        json!({"any": vec![leaf.clone(); 5_000]}),
        json!({"all": []}),
        json!({"type": "tag"}),
        json!({"type": "nonexistent", "params": {}}),
        json!({"type": "segment", "params": {"op": "member_of", "segment_id": i64::MAX}}),
        json!({"type": "attribute", "params": {"key": "İ".repeat(40), "op": "eq", "value": "a\u{0}"}}),
        json!([leaf]),
        json!("all"),
    ]
}

/// The hostile values for a value of `schema`'s type (`name` helps to
/// recognise condition trees, which the spec describes as opaque objects).
fn hostile_for(spec: &Value, schema: &Value, name: &str) -> Vec<Value> {
    let schema = resolve(spec, schema);
    let types = types_of(schema);
    let mut out = vec![Value::Null];
    if name == "conditions" {
        out.extend(hostile_trees());
        // A well-formed leaf whose value is hostile (`plan` is declared).
        out.extend(hostile_strings().into_iter().map(|value| {
            json!({"type": "attribute", "params": {"key": "plan", "op": "eq", "value": value}})
        }));
        return out;
    }
    if name == "attributes" {
        out.extend(
            hostile_strings()
                .into_iter()
                .map(|value| json!({"plan": value})),
        );
    }
    if types.contains(&"string") {
        if schema["format"] == "date-time" || schema["format"] == "date" {
            out.extend(hostile_dates());
        } else {
            out.extend(hostile_strings());
        }
    }
    if types.contains(&"integer") || types.contains(&"number") {
        out.extend(hostile_numbers());
    }
    if types.contains(&"boolean") {
        out.extend([json!("true"), json!(1)]);
    }
    if types.contains(&"array") {
        let item = plain(spec, &schema["items"], "item", None);
        out.extend([
            json!([]),
            json!([Value::Null]),
            Value::Array(vec![item; 20_000]),
        ]);
        out.extend(
            hostile_for(spec, &schema["items"], name)
                .into_iter()
                .map(|v| json!([v])),
        );
    }
    if types.contains(&"object") {
        out.extend([
            json!({}),
            json!([]),
            json!({"\u{0}": 1, "İ".repeat(40): "x"}),
        ]);
    }
    out
}

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap_or_default();
            resolve(spec, &spec["components"]["schemas"][name])
        }
        None => match (schema["allOf"].as_array(), schema["oneOf"].as_array()) {
            (Some(all), _) if all.len() == 1 => resolve(spec, &all[0]),
            (_, Some(one)) => resolve(
                spec,
                one.iter().find(|s| s["type"] != "null").unwrap_or(&one[0]),
            ),
            _ => schema,
        },
    }
}

fn types_of(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ if schema["enum"].is_array() => vec!["enum"],
        _ if schema["properties"].is_object() => vec!["object"],
        _ => Vec::new(),
    }
}

/// A plain, valid-looking value of `schema`'s type.
fn plain(spec: &Value, schema: &Value, name: &str, fixtures: Option<&Fixtures>) -> Value {
    let schema = resolve(spec, schema);
    if let Some(example) = schema.get("example") {
        return example.clone();
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    if name == "conditions" {
        return json!({"type": "tag", "params": {"op": "has_any", "tags": ["plain"]}});
    }
    let types = types_of(schema);
    if types.contains(&"object") {
        let mut object = Map::new();
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(properties) = schema["properties"].as_object() {
            for (key, property) in properties {
                if required.contains(&key.as_str()) {
                    object.insert(key.clone(), plain(spec, property, key, fixtures));
                }
            }
        }
        return Value::Object(object);
    }
    if types.contains(&"array") {
        return json!([plain(spec, &schema["items"], name, fixtures)]);
    }
    if types.contains(&"integer") || types.contains(&"number") {
        let id = fixtures.map(|f| match name {
            "contact_id" | "contact_ids" | "ids" => f.contact,
            "segment_id" => f.segment,
            _ => 1,
        });
        return json!(id.unwrap_or(1));
    }
    if types.contains(&"boolean") {
        return json!(true);
    }
    if schema["format"] == "date-time" {
        return json!("2024-05-01T10:00:00Z");
    }
    json!(format!("plain-{name}"))
}

/// Everything a client can read of the workspace.
async fn observable(app: &TestApp) -> Value {
    let mut state = Map::new();
    for path in [
        "/v1/contacts?limit=1000",
        "/v1/tags?limit=1000",
        "/v1/segments?limit=100",
        "/v1/attributes",
        "/v1/api-keys",
    ] {
        state.insert(path.into(), app.get(path).await.expect(200));
    }
    Value::Object(state)
}

struct Probe {
    method: Method,
    path: String,
    body: Option<Value>,
    what: String,
}

fn probes(spec: &Value, fixtures: &Fixtures) -> Vec<Probe> {
    let mut out = Vec::new();
    let Some(paths) = spec["paths"].as_object() else {
        return out;
    };
    for (template, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, operation) in item {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let path_value = |name: &str| -> String {
                match name {
                    "id" if template.starts_with("/v1/contacts") => fixtures.contact.to_string(),
                    "id" if template.starts_with("/v1/segments") => fixtures.segment.to_string(),
                    "id" if template.starts_with("/v1/tags") => fixtures.tag.to_string(),
                    "id" if template.starts_with("/v1/api-keys") => fixtures.key.to_string(),
                    "key" => "plan".into(),
                    "tag" => "vip".into(),
                    _ => "1".into(),
                }
            };
            let fill = |overrides: &[(&str, String)]| -> String {
                let mut path = template.clone();
                for p in &parameters {
                    if p["in"] == "path" {
                        let name = p["name"].as_str().unwrap_or_default();
                        let value = overrides
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map_or_else(|| path_value(name), |(_, v)| v.clone());
                        path = path.replace(&format!("{{{name}}}"), &value);
                    }
                }
                path
            };
            let body_schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            let base_body =
                (!body_schema.is_null()).then(|| plain(spec, body_schema, "body", Some(fixtures)));
            // Each parameter, hostile.
            for p in &parameters {
                let name = p["name"].as_str().unwrap_or_default();
                for value in hostile_for(spec, &p["schema"], name) {
                    let text = match &value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let encoded: String = text
                        .bytes()
                        .map(|b| {
                            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                                (b as char).to_string()
                            } else {
                                format!("%{b:02X}")
                            }
                        })
                        .collect();
                    let path = if p["in"] == "path" {
                        if encoded.is_empty() {
                            continue;
                        }
                        fill(&[(name, encoded)])
                    } else {
                        format!("{}?{name}={encoded}", fill(&[]))
                    };
                    out.push(Probe {
                        method: method.clone(),
                        path,
                        body: base_body.clone(),
                        what: format!("{method} {template} {name}={}", short(&value)),
                    });
                }
            }
            // The whole body, of another shape.
            if base_body.is_some() {
                for body in [
                    json!([null, null]),
                    json!([]),
                    json!("x"),
                    json!(5),
                    Value::Null,
                ] {
                    out.push(Probe {
                        method: method.clone(),
                        path: fill(&[]),
                        body: Some(body.clone()),
                        what: format!("{method} {template} body={body}"),
                    });
                }
            }
            // Each body field, hostile, in an otherwise plain body.
            let schema = resolve(spec, body_schema);
            if let (Some(base), Some(properties)) = (&base_body, schema["properties"].as_object()) {
                for (field, property) in properties {
                    for value in hostile_for(spec, property, field) {
                        let mut body = base.clone();
                        body[field] = value.clone();
                        out.push(Probe {
                            method: method.clone(),
                            path: fill(&[]),
                            body: Some(body),
                            what: format!("{method} {template} /{field}={}", short(&value)),
                        });
                    }
                }
            }
        }
    }
    out
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

async fn every_operation_refuses_hostile_input_cleanly(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        HttpSettings {
            workers: 2,
            rate_limit: None,
            ..HttpSettings::default()
        },
    )
    .await;
    app.attribute("plan", "text").await;
    let contact = app
        .contact(json!({"name": "Target", "tags": ["vip"], "attributes": {"plan": "pro"}}))
        .await["id"]
        .as_i64()
        .unwrap();
    let segment = app.segment(json!({"name": "Hand", "kind": "static"})).await;
    let tags = app.get("/v1/tags").await.expect(200);
    let tag = tags["items"][0]["id"].as_i64().unwrap();
    let key = app
        .post("/v1/api-keys", json!({"name": "spare"}))
        .await
        .expect(201)["id"]
        .as_i64()
        .unwrap();
    let fixtures = Fixtures {
        contact,
        segment,
        tag,
        key,
    };
    let spec = serde_json::to_value(segments_api::openapi::spec()).unwrap();
    let probes = probes(&spec, &fixtures);
    let operations = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum::<usize>();
    assert!(probes.len() > 1_000, "only {} probes", probes.len());

    let mut failures = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for probe in &probes {
        let write = probe.method != Method::GET;
        let before = if write {
            Some(observable(&app).await)
        } else {
            None
        };
        let reply = app
            .call(probe.method.clone(), &probe.path, probe.body.clone())
            .await;
        let status = reply.status.as_u16();
        *statuses.entry(status).or_default() += 1;
        if status >= 500 {
            failures.push(format!("{}: {status} {}", probe.what, reply.body));
            continue;
        }
        if status >= 400 {
            if reply.content_type != "application/problem+json" {
                failures.push(format!(
                    "{}: {status} as {}",
                    probe.what, reply.content_type
                ));
            }
            if let Some(before) = before
                && observable(&app).await != before
            {
                failures.push(format!(
                    "{}: {status}, yet the workspace changed",
                    probe.what
                ));
            }
        }
    }
    eprintln!(
        "hostile input ({backend:?}): {operations} operations, {} requests, statuses {statuses:?}",
        probes.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    app.stop().await;
}

on_both_backends!(every_operation_refuses_hostile_input_cleanly);
