//! `channel`: the contact's platform is in / not in a list. A contact with no
//! channel matches neither.

use std::collections::BTreeSet;
use std::sync::Arc;

use sea_query::{Expr, ExprTrait};
use segments_domain::{Channel, Violations};
use serde::Deserialize;
use serde_json::{Value, json};

use super::params::{check_list_len, fail, parse};
use crate::ContactSnapshot;
use crate::plugin::{
    Condition, ConditionType, DataRef, EvalContext, ParseContext, SqlContext, SqlError,
};
use crate::sql::{Contacts, contact};

const MAX_CHANNELS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    In,
    NotIn,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    op: Op,
    channels: Vec<String>,
}

/// The `channel` condition type.
#[derive(Debug, Clone, Copy)]
pub struct ChannelCondition;

#[derive(Debug)]
struct Compiled {
    op: Op,
    channels: BTreeSet<String>,
}

impl ConditionType for ChannelCondition {
    fn name(&self) -> &'static str {
        "channel"
    }

    fn description(&self) -> &'static str {
        "Contacts whose channel (whatsapp, sms, email…) is, or is not, one of a list. Contacts without a channel match neither."
    }

    fn operators(&self) -> &'static [&'static str] {
        &["in", "not_in"]
    }

    fn params_schema(&self) -> Value {
        json!({
            "type": "object",
            "required": ["op", "channels"],
            "additionalProperties": false,
            "properties": {
                "op": {"enum": self.operators()},
                "channels": {
                    "type": "array", "minItems": 1, "maxItems": MAX_CHANNELS,
                    "items": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$", "maxLength": 32}
                }
            }
        })
    }

    fn parse(
        &self,
        params: &Value,
        _: &ParseContext<'_>,
    ) -> Result<Arc<dyn Condition>, Violations> {
        let p: Params = parse(params)?;
        check_list_len(p.channels.len(), "/channels", MAX_CHANNELS)?;
        let mut channels = BTreeSet::new();
        for (i, raw) in p.channels.iter().enumerate() {
            let c = Channel::parse(raw)
                .map_err(|e| fail(&format!("/channels/{i}"), e.code, e.message))?;
            channels.insert(c.into_inner());
        }
        Ok(Arc::new(Compiled { op: p.op, channels }))
    }
}

impl Condition for Compiled {
    fn matches(&self, c: &ContactSnapshot, _: &EvalContext<'_>) -> bool {
        match &c.contact.fields.channel {
            None => false,
            Some(channel) => self.channels.contains(channel.as_str()) == (self.op == Op::In),
        }
    }

    fn to_sql(&self, _: &SqlContext<'_>) -> Result<Expr, SqlError> {
        let values = self.channels.iter().cloned();
        let test = match self.op {
            Op::In => contact(Contacts::Channel).is_in(values),
            Op::NotIn => contact(Contacts::Channel).is_not_in(values),
        };
        Ok(contact(Contacts::Channel).is_not_null().and(test))
    }

    fn reads(&self) -> Vec<DataRef> {
        vec![DataRef::Channel]
    }
}
