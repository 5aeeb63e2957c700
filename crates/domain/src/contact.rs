//! A contact's own fields and the drafts and patches that change them.

use std::collections::BTreeMap;
use std::fmt;

use crate::attribute::{AttributeKey, AttributeType, AttributeValue};
use crate::ids::{AttributeId, ContactId};
use crate::limits::{MAX_CHANNEL_CHARS, MAX_EMAIL_CHARS, MAX_EXTERNAL_ID_CHARS, MAX_NAME_CHARS};
use crate::text::{TagName, bounded_text};
use crate::time::Timestamp;
use crate::violation::{FieldError, Violations, pointer_token};

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }

            /// Wraps a value read back from the store, which was parsed on its
            /// way in; re-parsing would turn a later tightening of the rules
            /// into unreadable rows.
            pub fn from_stored(value: String) -> Self {
                Self(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// The messaging platform a contact talks on: a lowercase identifier such as
/// `whatsapp`, `sms` or `email`. Not a closed list: new platforms appear
/// faster than releases, so any identifier of the right form is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(String);
string_newtype!(Channel);

/// A regular expression for what [`Channel::parse`] accepts once trimmed
/// (besides its length), for schemas.
pub const CHANNEL_PATTERN: &str = "^[a-z][a-z0-9_-]*$";

impl Channel {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(FieldError::new("empty", "must not be empty"));
        }
        if value.len() > MAX_CHANNEL_CHARS {
            return Err(FieldError::new(
                "too_long",
                format!("at most {MAX_CHANNEL_CHARS} characters are allowed"),
            ));
        }
        let mut chars = value.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        if !first_ok
            || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            return Err(FieldError::new(
                "invalid_channel",
                "must be a lowercase identifier such as whatsapp, sms or email (a-z, 0-9, _ and -)",
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

/// The customer's own identifier for a contact, unique per workspace; the key
/// of idempotent bulk upserts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExternalId(String);
string_newtype!(ExternalId);

impl ExternalId {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        // Not trimmed: an external id is an opaque key and must round-trip exactly.
        if raw.is_empty() {
            return Err(FieldError::new("empty", "must not be empty"));
        }
        if raw.chars().count() > MAX_EXTERNAL_ID_CHARS {
            return Err(FieldError::new(
                "too_long",
                format!("at most {MAX_EXTERNAL_ID_CHARS} characters are allowed"),
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err(FieldError::new(
                "control_character",
                "must not contain control characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
}

/// An e-mail address, checked for shape only (deliverability is not ours to
/// judge). The domain's ASCII letters are lowercased — domains are
/// case-insensitive — so conditions on domains compare plainly everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);
string_newtype!(Email);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let value = raw.trim();
        let invalid = || {
            FieldError::new(
                "invalid_email",
                "must be an e-mail address like ana@example.com",
            )
        };
        if value.chars().count() > MAX_EMAIL_CHARS {
            return Err(FieldError::new(
                "too_long",
                format!("at most {MAX_EMAIL_CHARS} characters are allowed"),
            ));
        }
        let (local, domain) = value.split_once('@').ok_or_else(invalid)?;
        let domain_ok = !domain.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.');
        if local.is_empty()
            || !domain_ok
            || value.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
    }
}

/// The fewest and most digits of a phone number.
pub const MIN_PHONE_DIGITS: usize = 4;
pub const MAX_PHONE_DIGITS: usize = 20;

/// A regular expression (ECMA-262) for phone numbers [`Phone::parse`]
/// accepts, for schemas: an optional `+`, then the digits with the
/// separators it drops. (It also trims surrounding whitespace, which the
/// pattern leaves out.)
pub fn phone_pattern() -> String {
    format!(r"^\+?[ .()-]*(?:[0-9][ .()-]*){{{MIN_PHONE_DIGITS},{MAX_PHONE_DIGITS}}}$")
}

/// A regular expression (ECMA-262) for e-mail addresses [`Email::parse`]
/// accepts, for schemas: one `@`, no whitespace or control character, and a
/// dotted domain that neither starts nor ends with a dot.
pub const EMAIL_PATTERN: &str = r"^[^@\s\u0000-\u001F\u007F-\u009F]+@[^@.\s\u0000-\u001F\u007F-\u009F]+(?:\.+[^@.\s\u0000-\u001F\u007F-\u009F]+)+$";

/// A phone number, normalised to `+` (when given) followed by 4–20 digits:
/// spaces, dashes, dots and parentheses are dropped so equal numbers compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);
string_newtype!(Phone);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let value = raw.trim();
        let (plus, rest) = match value.strip_prefix('+') {
            Some(rest) => ("+", rest),
            None => ("", value),
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => {
                    return Err(FieldError::new(
                        "invalid_phone",
                        "may hold only digits, an optional leading +, spaces, dashes, dots and parentheses",
                    ));
                }
            }
        }
        if !(MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&digits.len()) {
            return Err(FieldError::new(
                "invalid_phone",
                format!("must have between {MIN_PHONE_DIGITS} and {MAX_PHONE_DIGITS} digits"),
            ));
        }
        Ok(Self(format!("{plus}{digits}")))
    }
}

/// Parses a contact's display name.
pub fn parse_name(raw: &str) -> Result<String, FieldError> {
    bounded_text(raw, MAX_NAME_CHARS)
}

/// Attribute values a request sets (`Some`) or unsets (`None`), by key, still
/// untyped: their types are known only once the workspace's definitions are read.
pub type RawAttributes = BTreeMap<AttributeKey, Option<serde_json::Value>>;

/// Attribute values checked against the workspace's definitions.
pub type ResolvedAttributes = Vec<(AttributeId, Option<AttributeValue>)>;

/// Checks raw attribute values against the workspace's definitions.
///
/// `definition` answers the id and type of a declared key. Violations point at
/// `/attributes/<key>` and name the key, so a caller can show which one failed.
pub fn resolve_attributes(
    raw: &RawAttributes,
    definition: impl Fn(&AttributeKey) -> Option<(AttributeId, AttributeType)>,
) -> Result<ResolvedAttributes, Violations> {
    let mut violations = Violations::new();
    let mut resolved = Vec::with_capacity(raw.len());
    for (key, value) in raw {
        let pointer = format!("/attributes/{}", pointer_token(key.as_str()));
        let Some((id, ty)) = definition(key) else {
            violations.push(
                FieldError::new(
                    "undeclared_attribute",
                    format!("attribute `{key}` is not declared in this workspace"),
                )
                .at(pointer),
            );
            continue;
        };
        match value {
            None => resolved.push((id, None)),
            Some(json) => match ty.parse_value(json) {
                Ok(v) => resolved.push((id, Some(v))),
                Err(e) => violations.push(
                    FieldError::new(e.code, format!("attribute `{key}`: {}", e.message))
                        .at(pointer),
                ),
            },
        }
    }
    violations.into_result(resolved)
}

/// A contact's own columns: everything but its id, tags and attributes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactFields {
    pub external_id: Option<ExternalId>,
    pub name: Option<String>,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    pub channel: Option<Channel>,
    pub opted_in: bool,
    pub opted_in_at: Option<Timestamp>,
    pub first_contacted_at: Option<Timestamp>,
}

/// A change to a contact. `None` leaves a field alone; `Some(None)` clears it.
///
/// Creating a contact is applying a patch to [`ContactFields::default`], and a
/// bulk upsert applies each item's patch to the stored contact (or to the
/// default when there is none): one rule set for every write path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactPatch {
    pub external_id: Option<Option<ExternalId>>,
    pub name: Option<Option<String>>,
    pub phone: Option<Option<Phone>>,
    pub email: Option<Option<Email>>,
    pub channel: Option<Option<Channel>>,
    pub opted_in: Option<bool>,
    /// When the contact opted in, for imports that carry the original instant.
    pub opted_in_at: Option<Timestamp>,
    pub first_contacted_at: Option<Option<Timestamp>>,
    /// Replaces the contact's whole tag set when present.
    pub tags: Option<Vec<TagName>>,
    /// Tags to add, after any replacement.
    pub add_tags: Vec<TagName>,
    /// Tags to remove, after any replacement and additions.
    pub remove_tags: Vec<TagName>,
    /// Sets or unsets the named attributes; others are left alone.
    pub attributes: RawAttributes,
}

impl ContactPatch {
    /// Whether the patch changes any of the contact's own columns (as opposed
    /// to only its tags or attribute values).
    pub fn touches_fields(&self) -> bool {
        self.external_id.is_some()
            || self.name.is_some()
            || self.phone.is_some()
            || self.email.is_some()
            || self.channel.is_some()
            || self.opted_in.is_some()
            || self.opted_in_at.is_some()
            || self.first_contacted_at.is_some()
    }
}

impl ContactFields {
    /// Applies `patch` as of `now`.
    ///
    /// Opt-in rules: opting in stamps `opted_in_at` (the given instant, else
    /// `now`) and repeating it keeps the first stamp; opting out clears it; an
    /// `opted_in_at` for a contact that ends up opted out is refused.
    pub fn apply(&mut self, patch: &ContactPatch, now: Timestamp) -> Result<(), Violations> {
        if let Some(v) = &patch.external_id {
            self.external_id.clone_from(v);
        }
        if let Some(v) = &patch.name {
            self.name.clone_from(v);
        }
        if let Some(v) = &patch.phone {
            self.phone.clone_from(v);
        }
        if let Some(v) = &patch.email {
            self.email.clone_from(v);
        }
        if let Some(v) = &patch.channel {
            self.channel.clone_from(v);
        }
        if let Some(v) = patch.first_contacted_at {
            self.first_contacted_at = v;
        }
        let requested = patch.opted_in.unwrap_or(self.opted_in);
        match (requested, patch.opted_in_at) {
            (false, Some(_)) => {
                return Err(Violations::one(
                    FieldError::new(
                        "opted_out",
                        "opted_in_at can only be given for a contact that is opted in",
                    )
                    .at("/opted_in_at"),
                ));
            }
            (false, None) => {
                self.opted_in = false;
                self.opted_in_at = None;
            }
            (true, Some(at)) => {
                self.opted_in = true;
                self.opted_in_at = Some(at);
            }
            (true, None) => {
                if !self.opted_in || self.opted_in_at.is_none() {
                    self.opted_in_at = Some(now);
                }
                self.opted_in = true;
            }
        }
        Ok(())
    }
}

/// A stored contact as every reader sees it: its columns, tags and typed attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub id: ContactId,
    pub fields: ContactFields,
    /// Tag names as spelled when each tag was created, sorted by their key.
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, AttributeValue>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Removes repeated tags (equal ignoring case), keeping the first spelling.
pub fn dedup_tags(tags: Vec<TagName>) -> Vec<TagName> {
    let mut seen = std::collections::HashSet::new();
    tags.into_iter().filter(|t| seen.insert(t.key())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn phones_are_normalised() {
        assert_eq!(
            Phone::parse(" +1 (415) 555-0100 ").map(Phone::into_inner),
            Ok("+14155550100".into())
        );
        assert!(Phone::parse("+1 415 CALL-NOW").is_err());
        assert!(Phone::parse("12").is_err());
    }

    #[test]
    fn email_domains_are_lowercased_but_local_parts_kept() {
        assert_eq!(
            Email::parse("Ana.Lima@Example.COM").map(Email::into_inner),
            Ok("Ana.Lima@example.com".into())
        );
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(Email::parse("ana@example.com").is_ok());
        for bad in [
            "ana",
            "@example.com",
            "ana@example",
            "ana@@example.com",
            "a na@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channels_are_lowercase_identifiers() {
        assert!(Channel::parse("whatsapp").is_ok());
        assert!(Channel::parse("WhatsApp").is_err());
        assert!(Channel::parse("").is_err());
    }

    fn at(day: &str) -> Timestamp {
        Timestamp::parse_str(day).unwrap_or_else(|e| panic!("fixture {day}: {e}"))
    }

    fn opt(opted_in: Option<bool>, opted_in_at: Option<Timestamp>) -> ContactPatch {
        ContactPatch {
            opted_in,
            opted_in_at,
            ..ContactPatch::default()
        }
    }

    #[test]
    fn opting_in_twice_keeps_the_first_instant() {
        let mut c = ContactFields::default();
        assert_eq!(c.apply(&opt(Some(true), None), at("2024-01-01")), Ok(()));
        assert_eq!(c.apply(&opt(Some(true), None), at("2024-02-01")), Ok(()));
        assert_eq!((c.opted_in, c.opted_in_at), (true, Some(at("2024-01-01"))));
    }

    #[test]
    fn opting_out_clears_the_instant() {
        let mut c = ContactFields::default();
        assert_eq!(
            c.apply(&opt(Some(true), Some(at("2023-05-05"))), at("2024-01-01")),
            Ok(())
        );
        assert_eq!(c.opted_in_at, Some(at("2023-05-05")));
        assert_eq!(c.apply(&opt(Some(false), None), at("2024-01-01")), Ok(()));
        assert_eq!((c.opted_in, c.opted_in_at), (false, None));
    }

    #[test]
    fn an_opt_in_instant_for_an_opted_out_contact_is_refused() {
        let mut c = ContactFields::default();
        let err = c
            .apply(&opt(None, Some(at("2023-05-05"))), at("2024-01-01"))
            .err();
        assert_eq!(
            err.map(|v| v.into_vec()[0].pointer.clone()),
            Some("/opted_in_at".into())
        );
    }

    #[test]
    fn absent_fields_are_left_alone_and_null_clears() {
        let mut c = ContactFields {
            name: Some("Ana".into()),
            channel: Channel::parse("sms").ok(),
            ..ContactFields::default()
        };
        let patch = ContactPatch {
            channel: Some(None),
            ..ContactPatch::default()
        };
        assert_eq!(c.apply(&patch, at("2024-01-01")), Ok(()));
        assert_eq!((c.name.as_deref(), c.channel), (Some("Ana"), None));
    }

    #[test]
    fn undeclared_and_mistyped_attributes_are_named() {
        let mut raw = RawAttributes::new();
        let age = AttributeKey::parse("age").ok();
        let plan = AttributeKey::parse("plan").ok();
        if let (Some(age), Some(plan)) = (age, plan) {
            raw.insert(age, Some(json!("old")));
            raw.insert(plan, Some(json!("gold")));
        }
        let result = resolve_attributes(&raw, |k| {
            (k.as_str() == "age").then_some((AttributeId(1), AttributeType::Number))
        });
        let pointers: Vec<_> = result
            .err()
            .map(|v| {
                v.into_vec()
                    .into_iter()
                    .map(|v| (v.pointer, v.code))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            pointers,
            vec![
                ("/attributes/age".to_owned(), "type_mismatch"),
                ("/attributes/plan".to_owned(), "undeclared_attribute")
            ]
        );
    }

    #[test]
    fn repeated_tags_collapse_ignoring_case() {
        let tags: Vec<_> = ["VIP", "vip", "new"]
            .iter()
            .filter_map(|t| TagName::parse(t).ok())
            .collect();
        let names: Vec<_> = dedup_tags(tags)
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect();
        assert_eq!(names, vec!["VIP", "new"]);
    }
}
