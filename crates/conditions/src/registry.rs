//! The registry of condition types, built once at start-up.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::ConditionType;

/// Builds a [`Registry`]. Built-in and third-party types register the same way.
#[derive(Default)]
pub struct RegistryBuilder {
    types: BTreeMap<&'static str, Arc<dyn ConditionType>>,
}

impl fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.types.keys()).finish()
    }
}

/// Two plugins claimed the same type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("condition type `{0}` is registered twice")]
pub struct DuplicateType(pub &'static str);

impl RegistryBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a condition type. Names are unique: a second registration of a
    /// name is refused rather than silently replacing the first.
    pub fn register(&mut self, plugin: impl ConditionType) -> Result<&mut Self, DuplicateType> {
        let name = plugin.name();
        if self.types.contains_key(name) {
            return Err(DuplicateType(name));
        }
        self.types.insert(name, Arc::new(plugin));
        Ok(self)
    }

    pub fn build(self) -> Registry {
        Registry { types: self.types }
    }
}

/// The condition types known to this process.
#[derive(Clone)]
pub struct Registry {
    types: BTreeMap<&'static str, Arc<dyn ConditionType>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.types.keys()).finish()
    }
}

/// A registered type as listed to clients.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeInfo {
    pub name: &'static str,
    pub description: &'static str,
    pub params_schema: Value,
    /// The values `params.op` takes, read from the schema.
    pub operators: Vec<String>,
}

impl Registry {
    /// A registry of the built-in types only.
    pub fn builtin() -> Self {
        let mut builder = RegistryBuilder::new();
        crate::builtin::register_all(&mut builder);
        builder.build()
    }

    pub fn get(&self, name: &str) -> Option<&dyn ConditionType> {
        self.types.get(name).map(|t| t.as_ref())
    }

    /// Every type, by name.
    pub fn list(&self) -> Vec<TypeInfo> {
        self.types
            .values()
            .map(|t| {
                let params_schema = t.params_schema();
                let operators = operators(&params_schema);
                TypeInfo {
                    name: t.name(),
                    description: t.description(),
                    params_schema,
                    operators,
                }
            })
            .collect()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.types.keys().copied().collect()
    }
}

/// The values of `properties.op.enum` in a params schema — or in each of
/// its `oneOf` branches, in order (one branch per operator group) — without
/// repeats.
fn operators(schema: &Value) -> Vec<String> {
    let branches: Vec<&Value> = match schema.get("oneOf").and_then(Value::as_array) {
        Some(branches) => branches.iter().collect(),
        None => vec![schema],
    };
    let mut operators: Vec<String> = Vec::new();
    for op in branches
        .into_iter()
        .filter_map(|b| b.pointer("/properties/op/enum").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
    {
        if !operators.iter().any(|known| known == op) {
            operators.push(op.to_owned());
        }
    }
    operators
}
