//! `channel`: the contact's platform is in / not in a list. A contact with no
//! channel matches neither.

use std::collections::BTreeSet;
use std::sync::Arc;

use schemars::JsonSchema;
use sea_query::{Expr, ExprTrait};
use segments_domain::contact::CHANNEL_PATTERN;
use segments_domain::limits::MAX_CHANNEL_CHARS;
use segments_domain::{Channel, Violations};
use serde::Deserialize;
use serde_json::Value;

use super::params::{check_list_len, fail, parse, schema_of};
use crate::ContactSnapshot;
use crate::plugin::{
    Condition, ConditionType, DataRef, EvalContext, ParseContext, SqlContext, SqlError,
};
use crate::sql::{Contacts, contact};

const MAX_CHANNELS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Op {
    In,
    NotIn,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    op: Op,
    /// Channel identifiers such as `whatsapp`, `sms` or `email`.
    #[schemars(
        length(min = 1, max = MAX_CHANNELS),
        inner(length(min = 1, max = MAX_CHANNEL_CHARS), pattern(CHANNEL_PATTERN))
    )]
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

    fn params_schema(&self) -> Value {
        schema_of::<Params>()
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
