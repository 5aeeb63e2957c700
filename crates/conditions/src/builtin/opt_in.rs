//! `opt_in`: the contact opted in / out.

use std::sync::Arc;

use schemars::JsonSchema;
use sea_query::{Expr, ExprTrait};
use segments_domain::Violations;
use serde::Deserialize;
use serde_json::Value;

use super::params::{parse, schema_of};
use crate::ContactSnapshot;
use crate::plugin::{
    Condition, ConditionType, DataRef, EvalContext, ParseContext, SqlContext, SqlError,
};
use crate::sql::{Contacts, contact};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    /// `true`: contacts who opted in; `false`: the others.
    opted_in: bool,
}

/// The `opt_in` condition type.
#[derive(Debug, Clone, Copy)]
pub struct OptInCondition;

#[derive(Debug)]
struct Compiled {
    opted_in: bool,
}

impl ConditionType for OptInCondition {
    fn name(&self) -> &'static str {
        "opt_in"
    }

    fn description(&self) -> &'static str {
        "Contacts who have opted in (`opted_in: true`) or not (`opted_in: false`)."
    }

    fn params_schema(&self) -> Value {
        schema_of::<Params>()
    }

    fn parse(
        &self,
        params: &Value,
        _: &ParseContext<'_>,
    ) -> Result<Arc<dyn Condition>, Violations> {
        let p: Params = parse(params)?;
        Ok(Arc::new(Compiled {
            opted_in: p.opted_in,
        }))
    }
}

impl Condition for Compiled {
    fn matches(&self, c: &ContactSnapshot, _: &EvalContext<'_>) -> bool {
        c.contact.fields.opted_in == self.opted_in
    }

    fn to_sql(&self, _: &SqlContext<'_>) -> Result<Expr, SqlError> {
        Ok(contact(Contacts::OptedIn).eq(self.opted_in))
    }

    fn reads(&self) -> Vec<DataRef> {
        vec![DataRef::OptIn]
    }
}
