//! The condition tree in the spec, from the registry: a recursive `oneOf` of
//! the three groups and the leaves, each leaf discriminated by `type` and
//! carrying the `params` schema its condition type derives from the type it
//! parses `params` into. A plugin registered in the process appears here as
//! it appears in `GET /v1/condition-types`: both read `Registry::list`.

use segments_conditions::Registry;
use serde_json::{Map, Value, json};

/// The component every tree-valued field refers to.
const TREE: &str = "ConditionTree";

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// `first_contacted` → `FirstContacted`.
fn pascal(name: &str) -> String {
    name.split(['_', '-'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn group(key: &str, description: &str, content: Value) -> Value {
    json!({
        "type": "object",
        "description": description,
        "required": [key],
        "additionalProperties": false,
        "properties": { key: content }
    })
}

/// Replaces the placeholder `ConditionTree` with the tree the registry
/// accepts.
pub(crate) fn apply(doc: &mut Value, registry: &Registry) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let description = schemas
        .get(TREE)
        .and_then(|tree| tree.get("description"))
        .cloned()
        .unwrap_or_else(|| json!("A condition tree node."));
    let example = schemas
        .get(TREE)
        .and_then(|tree| tree.get("example"))
        .cloned();

    let mut leaves = Vec::new();
    let mut mapping = Map::new();
    for info in registry.list() {
        let leaf = format!("{}Condition", pascal(info.name));
        let params = format!("{leaf}Params");
        schemas.insert(params.clone(), info.params_schema);
        schemas.insert(
            leaf.clone(),
            json!({
                "type": "object",
                "description": info.description,
                "required": ["type", "params"],
                "additionalProperties": false,
                "properties": {
                    "type": { "type": "string", "enum": [info.name] },
                    "params": reference(&params)
                }
            }),
        );
        mapping.insert(
            info.name.to_owned(),
            json!(format!("#/components/schemas/{leaf}")),
        );
        leaves.push(reference(&leaf));
    }
    schemas.insert(
        "ConditionLeaf".into(),
        json!({
            "description": "One condition: its `type` names a registered condition type (`GET /v1/condition-types`) and decides the shape of `params`.",
            "oneOf": leaves,
            "discriminator": { "propertyName": "type", "mapping": mapping }
        }),
    );
    schemas.insert(
        "ConditionAll".into(),
        group(
            "all",
            "True when every child is (an empty list is true).",
            json!({ "type": "array", "items": reference(TREE) }),
        ),
    );
    schemas.insert(
        "ConditionAny".into(),
        group(
            "any",
            "True when at least one child is (an empty list is false).",
            json!({ "type": "array", "items": reference(TREE) }),
        ),
    );
    schemas.insert(
        "ConditionNot".into(),
        group("not", "True when its child is false.", reference(TREE)),
    );
    let mut tree = json!({
        "description": description,
        "oneOf": [
            reference("ConditionAll"),
            reference("ConditionAny"),
            reference("ConditionNot"),
            reference("ConditionLeaf")
        ]
    });
    if let (Some(example), Some(tree)) = (example, tree.as_object_mut()) {
        tree.insert("example".into(), example);
    }
    schemas.insert(TREE.into(), tree);
}

#[cfg(test)]
mod tests {
    use super::pascal;

    #[test]
    fn names_become_component_names() {
        assert_eq!(pascal("tag"), "Tag");
        assert_eq!(pascal("first_contacted"), "FirstContacted");
        assert_eq!(pascal("email-domain"), "EmailDomain");
    }
}
