//! What the server enforces on strings, lists and numbers, stated in the
//! spec from the constants that enforce it (`segments_domain::limits`), so
//! that the two cannot drift and a generated client knows the bounds before
//! it sends anything. Applied to the generated document as one JSON edit:
//! each entry names where a bound sits and which rule it is.

use segments_domain::attribute::ATTRIBUTE_KEY_PATTERN as ATTRIBUTE_KEY;
use segments_domain::contact::{CHANNEL_PATTERN, EMAIL_PATTERN, phone_pattern};
use segments_domain::limits::{
    MAX_ATTRIBUTE_KEY_CHARS, MAX_ATTRIBUTES_PER_REQUEST, MAX_BATCH_GET, MAX_BULK_TAG_CONTACTS,
    MAX_BULK_UPSERT, MAX_CHANNEL_CHARS, MAX_EMAIL_CHARS, MAX_EXTERNAL_ID_CHARS, MAX_LABEL_CHARS,
    MAX_MEMBER_NAMES, MAX_NAME_CHARS, MAX_PAGE_SIZE, MAX_TAG_CHARS, MAX_TAGS_PER_REQUEST,
};
use segments_domain::text::{
    CONTROL_FREE_PATTERN as CONTROL_FREE, VISIBLE_TEXT_PATTERN as VISIBLE_TEXT,
};
use segments_domain::time::INSTANT_PATTERN;
use serde_json::{Value, json};

fn tag() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_TAG_CHARS, "pattern": VISIBLE_TEXT})
}

fn label(max: usize) -> Value {
    json!({"minLength": 1, "maxLength": max, "pattern": VISIBLE_TEXT})
}

fn attribute_key() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": MAX_ATTRIBUTE_KEY_CHARS, "pattern": ATTRIBUTE_KEY})
}

/// `ExternalId::parse`: not trimmed (an opaque key), non-empty, no
/// control character.
fn external_id() -> Value {
    json!({"minLength": 1, "maxLength": MAX_EXTERNAL_ID_CHARS, "pattern": CONTROL_FREE})
}

/// A cursor is a `next_cursor` given back: never empty.
fn cursor() -> Value {
    json!({"minLength": 1})
}

fn list(min: usize, max: usize) -> Value {
    json!({"minItems": min, "maxItems": max})
}

/// Merges `extra` into the object at `target`, if there is one.
fn merge(target: Option<&mut Value>, extra: Value) {
    if let (Some(Value::Object(target)), Value::Object(extra)) = (target, extra) {
        target.extend(extra);
    }
}

/// The schema of `schema.property` in the document's components.
fn property<'a>(doc: &'a mut Value, schema: &str, property: &str) -> Option<&'a mut Value> {
    doc.pointer_mut(&format!(
        "/components/schemas/{schema}/properties/{property}"
    ))
}

pub(crate) fn apply(doc: &mut Value) {
    let tags = [
        ("TagNames", "tags"),
        ("BulkTagInput", "tags"),
        ("ContactInput", "tags"),
    ];
    for (schema, field) in tags {
        // An empty list is accepted everywhere (and changes nothing).
        merge(property(doc, schema, field), list(0, MAX_TAGS_PER_REQUEST));
        if let Some(items) = property(doc, schema, field).and_then(|p| p.get_mut("items")) {
            *items = tag();
        }
    }
    merge(property(doc, "TagRename", "name"), label(MAX_TAG_CHARS));
    if let Some(kinds) = doc
        .pointer_mut("/components/schemas/SegmentInput/oneOf")
        .and_then(Value::as_array_mut)
    {
        for kind in kinds {
            merge(kind.pointer_mut("/properties/name"), label(MAX_NAME_CHARS));
            // Read through `SegmentFields`, which denies unknown fields;
            // utoipa states that for structs only.
            merge(Some(kind), json!({"additionalProperties": false}));
        }
    }
    // The contact's own fields, as `ContactInput::into_patch` parses them.
    merge(property(doc, "ContactInput", "name"), label(MAX_NAME_CHARS));
    merge(
        property(doc, "ContactInput", "phone"),
        json!({"pattern": phone_pattern()}),
    );
    merge(
        property(doc, "ContactInput", "email"),
        json!({"maxLength": MAX_EMAIL_CHARS, "pattern": EMAIL_PATTERN}),
    );
    merge(
        property(doc, "ContactInput", "channel"),
        json!({"minLength": 1, "maxLength": MAX_CHANNEL_CHARS, "pattern": CHANNEL_PATTERN}),
    );
    // `ContactFields::apply` refuses an opt-in instant for a contact left
    // opted out. Whether a PATCH's contact is opted in is stored state, so
    // the spec states the rule that always holds: send `opted_in: true`
    // with `opted_in_at`.
    merge(
        doc.pointer_mut("/components/schemas/ContactInput"),
        json!({
            "if": {"properties": {"opted_in_at": {"type": "string"}}, "required": ["opted_in_at"]},
            "then": {"properties": {"opted_in": {"const": true}}, "required": ["opted_in"]},
        }),
    );
    for field in ["opted_in_at", "first_contacted_at"] {
        merge(
            property(doc, "ContactInput", field),
            json!({"pattern": INSTANT_PATTERN}),
        );
    }
    merge(property(doc, "SegmentPatch", "name"), label(MAX_NAME_CHARS));
    merge(property(doc, "ApiKeyInput", "name"), label(MAX_LABEL_CHARS));
    merge(property(doc, "AttributeInput", "key"), attribute_key());
    merge(property(doc, "ContactInput", "external_id"), external_id());
    merge(property(doc, "SearchInput", "cursor"), cursor());
    for schema in ["Contact", "ContactInput"] {
        merge(
            property(doc, schema, "attributes"),
            json!({"propertyNames": attribute_key()}),
        );
    }
    merge(
        property(doc, "ContactInput", "attributes"),
        json!({"maxProperties": MAX_ATTRIBUTES_PER_REQUEST}),
    );
    merge(
        property(doc, "BulkTagInput", "contact_ids"),
        list(0, MAX_BULK_TAG_CONTACTS),
    );
    // Names that can match: contact names are visible text (what
    // `parse_name` stores). Any other string matches nobody (404).
    merge(
        property(doc, "MembersInput", "names"),
        list(0, MAX_MEMBER_NAMES),
    );
    if let Some(items) = property(doc, "MembersInput", "names").and_then(|p| p.get_mut("items")) {
        merge(Some(items), label(MAX_NAME_CHARS));
    }
    merge(
        property(doc, "MembersInput", "contact_ids"),
        list(0, MAX_BULK_TAG_CONTACTS),
    );
    merge(
        property(doc, "BulkUpsertInput", "contacts"),
        list(1, MAX_BULK_UPSERT),
    );
    merge(
        property(doc, "BatchGetInput", "ids"),
        list(1, MAX_BATCH_GET),
    );
    merge(
        property(doc, "SearchInput", "limit"),
        json!({"minimum": 1, "maximum": MAX_PAGE_SIZE}),
    );
    // Path and query parameters, wherever they appear.
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for operation in item.values_mut() {
                let Some(parameters) = operation
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                else {
                    continue;
                };
                for parameter in parameters {
                    let bound = match (parameter["in"].as_str(), parameter["name"].as_str()) {
                        (Some("path"), Some("tag")) => tag(),
                        (Some("path"), Some("key")) => attribute_key(),
                        (Some("query"), Some("cursor")) => cursor(),
                        (Some("query"), Some("limit")) => {
                            json!({"minimum": 1, "maximum": MAX_PAGE_SIZE})
                        }
                        _ => continue,
                    };
                    merge(parameter.get_mut("schema"), bound);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test: failing loudly is the point
mod tests {
    use segments_domain::{AttributeKey, Label, TagName};

    use super::{ATTRIBUTE_KEY, CONTROL_FREE, VISIBLE_TEXT};

    /// The patterns accept exactly what the parsers accept, on the cases
    /// that tell them apart.
    #[test]
    fn the_patterns_agree_with_the_parsers() {
        let visible = regex::Regex::new(VISIBLE_TEXT).unwrap();
        for text in [
            "vip", " vip ", "", " ", "\t", "a\u{1}b", "\u{85}", "ok\u{a0}", "\u{7f}x", "İ",
        ] {
            assert_eq!(
                TagName::parse(text).is_ok(),
                visible.is_match(text),
                "{text:?}"
            );
            assert_eq!(
                Label::parse(text).is_ok(),
                visible.is_match(text),
                "{text:?}"
            );
        }
        let control_free = regex::Regex::new(CONTROL_FREE).unwrap();
        for text in ["c-1", " x ", "", "a\u{1}b", "\u{85}", "ok\u{a0}", "İ"] {
            assert_eq!(
                segments_domain::ExternalId::parse(text).is_ok(),
                control_free.is_match(text),
                "{text:?}"
            );
        }
        let key = regex::Regex::new(ATTRIBUTE_KEY).unwrap();
        for text in ["plan", "p2_x", "2p", "Plan", "", "a-b", "é"] {
            assert_eq!(
                AttributeKey::parse(text).is_ok(),
                key.is_match(text),
                "{text:?}"
            );
        }
    }
}
