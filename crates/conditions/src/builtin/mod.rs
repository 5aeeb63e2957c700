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
            assert_eq!(info.params_schema["type"], "object", "{}", info.name);
            assert!(
                info.params_schema["properties"].is_object(),
                "{}",
                info.name
            );
        }
    }
}
