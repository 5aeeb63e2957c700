//! The built-in condition types. They register through the same public
//! [`RegistryBuilder::register`](crate::RegistryBuilder::register) as any
//! third-party plugin, and use nothing a plugin could not.

mod attribute;
mod channel;
mod dates;
mod first_contacted;
mod opt_in;
pub mod params;
mod segment;
mod tag;

pub use attribute::AttributeCondition;
pub use channel::ChannelCondition;
pub use first_contacted::FirstContactedCondition;
pub use opt_in::OptInCondition;
pub use segment::SegmentCondition;
pub use tag::TagCondition;

use crate::RegistryBuilder;

/// Registers every built-in type.
pub fn register_all(builder: &mut RegistryBuilder) {
    // Built-in names are distinct by construction; a clash here would be a
    // programming error caught by the registry's own tests.
    let _ = builder.register(TagCondition);
    let _ = builder.register(AttributeCondition);
    let _ = builder.register(ChannelCondition);
    let _ = builder.register(OptInCondition);
    let _ = builder.register(FirstContactedCondition);
    let _ = builder.register(SegmentCondition);
}

#[cfg(test)]
mod tests {
    use crate::{Registry, RegistryBuilder};

    #[test]
    fn every_builtin_registers_once_and_is_listed() {
        let mut builder = RegistryBuilder::new();
        super::register_all(&mut builder);
        assert!(
            builder.register(super::TagCondition).is_err(),
            "duplicates are refused"
        );
        let names: Vec<_> = Registry::builtin().list().iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                "attribute",
                "channel",
                "first_contacted",
                "opt_in",
                "segment",
                "tag"
            ]
        );
    }

    #[test]
    fn every_params_schema_is_an_object_schema() {
        for info in Registry::builtin().list() {
            // An object, or a `oneOf` of whole objects (one per operator group).
            let objects = match info.params_schema["oneOf"].as_array() {
                Some(branches) => branches.clone(),
                None => vec![info.params_schema.clone()],
            };
            for object in objects {
                assert_eq!(object["type"], "object", "{}", info.name);
                assert!(object["properties"].is_object(), "{}", info.name);
                assert_eq!(object["additionalProperties"], false, "{}", info.name);
            }
            assert!(
                !info.operators.is_empty() || info.name == "opt_in",
                "{}",
                info.name
            );
        }
    }

    /// Each operator group's branch requires exactly the fields the parser
    /// requires for it: a branch's own example parses, and the same example
    /// without one of the fields the branch requires is refused.
    #[test]
    fn operator_branches_require_what_the_parser_requires() {
        use serde_json::json;
        let examples = [
            (
                "first_contacted",
                json!({"op": "between", "from": "2024-01-01T00:00:00Z", "to": "2024-02-01T00:00:00Z"}),
            ),
            (
                "first_contacted",
                json!({"op": "within_last_days", "days": 3}),
            ),
            (
                "first_contacted",
                json!({"op": "more_than_days_ago", "days": 3}),
            ),
            ("attribute", json!({"key": "age", "op": "gt", "value": 3})),
            (
                "attribute",
                json!({"key": "plan", "op": "in", "values": ["gold"]}),
            ),
            (
                "attribute",
                json!({"key": "age", "op": "between", "min": 1, "max": 2}),
            ),
            (
                "attribute",
                json!({"key": "born", "op": "within_last_days", "days": 3}),
            ),
            ("attribute", json!({"key": "age", "op": "exists"})),
        ];
        let attributes = std::collections::HashMap::from([
            (
                "age".to_owned(),
                (
                    segments_domain::AttributeId(1),
                    segments_domain::AttributeType::Number,
                ),
            ),
            (
                "plan".to_owned(),
                (
                    segments_domain::AttributeId(2),
                    segments_domain::AttributeType::Text,
                ),
            ),
            (
                "born".to_owned(),
                (
                    segments_domain::AttributeId(3),
                    segments_domain::AttributeType::Date,
                ),
            ),
        ]);
        let segments = crate::SegmentSet::default();
        let ctx = crate::ParseContext {
            attributes: &attributes,
            segments: &segments,
            current_segment: None,
        };
        let registry = Registry::builtin();
        for (name, params) in examples {
            let schema = registry
                .list()
                .into_iter()
                .find(|i| i.name == name)
                .map(|i| i.params_schema);
            let Some(schema) = schema else {
                panic!("{name} is not registered")
            };
            let Some(ty) = registry.get(name) else {
                panic!("{name}")
            };
            assert!(ty.parse(&params, &ctx).is_ok(), "{params}");
            let op = params["op"].as_str().unwrap_or_default();
            let branch = schema["oneOf"]
                .as_array()
                .and_then(|b| {
                    b.iter().find(|b| {
                        b["properties"]["op"]["enum"]
                            .as_array()
                            .is_some_and(|ops| ops.iter().any(|o| o == op))
                    })
                })
                .cloned()
                .unwrap_or_default();
            for field in branch["required"].as_array().cloned().unwrap_or_default() {
                let mut without = params.clone();
                if let (Some(object), Some(field)) = (without.as_object_mut(), field.as_str()) {
                    object.remove(field);
                }
                assert!(ty.parse(&without, &ctx).is_err(), "{without} parsed");
            }
        }
    }
}
