//! `email_domain`: the contact's e-mail address is at one of the given domains.
//!
//! An example of a condition type that lives outside Segments, written only
//! against the public plugin API of `segments-conditions` — exactly as the
//! built-in types are. Register it next to the built-ins:
//!
//! ```
//! let mut builder = segments_conditions::RegistryBuilder::new();
//! segments_conditions::builtin::register_all(&mut builder);
//! builder.register(segments_plugin_email_domain::EmailDomainCondition).expect("a new name");
//! let registry = builder.build();
//! assert!(registry.get("email_domain").is_some());
//! ```
//!
//! Matching relies on Segments storing e-mail domains lowercased (ASCII), so
//! SQL compares plainly and means the same on SQLite and PostgreSQL.

use std::collections::BTreeSet;
use std::sync::Arc;

use schemars::JsonSchema;
use sea_query::{Expr, ExprTrait};
use segments_conditions::builtin::params::{check_list_len, fail, parse, schema_of};
use segments_conditions::sql::{Contacts, contact};
use segments_conditions::{
    Condition, ConditionType, ContactSnapshot, DataRef, EvalContext, ParseContext, SqlContext,
    SqlError,
};
use segments_domain::Violations;
use serde::Deserialize;
use serde_json::Value;

const MAX_DOMAINS: usize = 100;

/// A domain name's form, for the schema: what [`domain`] accepts before
/// folding case.
const DOMAIN_PATTERN: &str = "^[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$";

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Domain names such as `example.com`, compared case-insensitively.
    #[schemars(
        length(min = 1, max = MAX_DOMAINS),
        inner(length(max = 253), pattern(DOMAIN_PATTERN))
    )]
    domains: Vec<String>,
}

/// The `email_domain` condition type.
#[derive(Debug, Clone, Copy)]
pub struct EmailDomainCondition;

#[derive(Debug)]
struct Compiled {
    domains: BTreeSet<String>,
}

/// A domain name: labels of `a-z`, `0-9` and `-`, separated by dots. Case is
/// folded here, as it is for stored addresses.
fn domain(raw: &str, pointer: &str) -> Result<String, Violations> {
    let d = raw.trim().to_ascii_lowercase();
    let labels_ok = d.split('.').all(|l| {
        !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if d.len() > 253 || !d.contains('.') || !labels_ok {
        return Err(fail(
            pointer,
            "invalid_domain",
            format!("`{raw}` is not a domain name like example.com"),
        ));
    }
    Ok(d)
}

impl ConditionType for EmailDomainCondition {
    fn name(&self) -> &'static str {
        "email_domain"
    }

    fn description(&self) -> &'static str {
        "Contacts whose e-mail address is at one of the given domains (example.com). Contacts without an e-mail match nothing."
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
        check_list_len(p.domains.len(), "/domains", MAX_DOMAINS)?;
        let domains = p
            .domains
            .iter()
            .enumerate()
            .map(|(i, d)| domain(d, &format!("/domains/{i}")))
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(Compiled { domains }))
    }
}

impl Condition for Compiled {
    fn matches(&self, c: &ContactSnapshot, _: &EvalContext<'_>) -> bool {
        c.contact
            .fields
            .email
            .as_ref()
            .and_then(|e| e.as_str().rsplit_once('@'))
            .is_some_and(|(_, d)| self.domains.contains(d))
    }

    fn to_sql(&self, _: &SqlContext<'_>) -> Result<Expr, SqlError> {
        // Domains hold no LIKE wildcards (validated above), and addresses
        // have exactly one `@`, so a suffix match is exact.
        let any = self
            .domains
            .iter()
            .map(|d| contact(Contacts::Email).like(format!("%@{d}")))
            .reduce(|a, b| a.or(b))
            .unwrap_or_else(|| Expr::val(false));
        Ok(contact(Contacts::Email).is_not_null().and(any))
    }

    fn reads(&self) -> Vec<DataRef> {
        vec![DataRef::Field("email")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_validated_and_folded() {
        assert_eq!(
            domain("Example.COM", "/d").ok(),
            Some("example.com".to_owned())
        );
        for bad in ["example", "exa%mple.com", "a..b", "ex ample.com", "_x.com"] {
            assert!(domain(bad, "/d").is_err(), "{bad}");
        }
    }
}
