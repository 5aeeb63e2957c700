//! The patterns schemas state must never promise more than the parsers
//! take: every string a pattern matches is accepted. (The parsers may take
//! more — surrounding whitespace, say — which a schema need not mention.)
//! Strings are generated from the patterns themselves.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::string::string_regex;
use segments_domain::attribute::ATTRIBUTE_KEY_PATTERN;
use segments_domain::contact::{CHANNEL_PATTERN, EMAIL_PATTERN, parse_name, phone_pattern};
use segments_domain::limits::{
    MAX_ATTRIBUTE_KEY_CHARS, MAX_CHANNEL_CHARS, MAX_EMAIL_CHARS, MAX_EXTERNAL_ID_CHARS,
    MAX_NAME_CHARS, MAX_TAG_CHARS,
};
use segments_domain::text::{CONTROL_FREE_PATTERN, VISIBLE_TEXT_PATTERN};
use segments_domain::time::INSTANT_PATTERN;
use segments_domain::{AttributeKey, Channel, Email, ExternalId, Label, Phone, TagName, Timestamp};

/// Strings matching `pattern` (anchors dropped: a generated string is whole).
fn matching(pattern: &str) -> impl Strategy<Value = String> {
    let body = pattern.trim_start_matches('^').trim_end_matches('$');
    match string_regex(body) {
        Ok(strategy) => strategy,
        Err(e) => panic!("pattern {pattern} does not compile: {e}"),
    }
}

/// `limit` characters at most, as the schemas' `maxLength` says.
fn within(limit: usize) -> impl Fn(&String) -> bool {
    move |s| s.chars().count() <= limit
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn visible_text(s in matching(VISIBLE_TEXT_PATTERN).prop_filter("maxLength", within(MAX_TAG_CHARS))) {
        prop_assert!(parse_name(&s).is_ok(), "{s:?}");
        prop_assert!(Label::parse(&s).is_ok(), "{s:?}");
        // A tag also refuses names that fold longer than the bound, which
        // no pattern can say; the schema's maxLength leaves room for it
        // only in rare scripts, so they are left out of this check.
        if s.is_ascii() {
            prop_assert!(TagName::parse(&s).is_ok(), "{s:?}");
        }
    }

    #[test]
    fn names(s in matching(VISIBLE_TEXT_PATTERN).prop_filter("maxLength", within(MAX_NAME_CHARS))) {
        prop_assert!(parse_name(&s).is_ok(), "{s:?}");
    }

    #[test]
    fn external_ids(s in matching(CONTROL_FREE_PATTERN).prop_filter("maxLength", within(MAX_EXTERNAL_ID_CHARS))) {
        prop_assert!(ExternalId::parse(&s).is_ok(), "{s:?}");
    }

    #[test]
    fn channels(s in matching(CHANNEL_PATTERN).prop_filter("maxLength", within(MAX_CHANNEL_CHARS))) {
        prop_assert!(Channel::parse(&s).is_ok(), "{s:?}");
    }

    #[test]
    fn attribute_keys(s in matching(ATTRIBUTE_KEY_PATTERN).prop_filter("maxLength", within(MAX_ATTRIBUTE_KEY_CHARS))) {
        prop_assert!(AttributeKey::parse(&s).is_ok(), "{s:?}");
    }

    #[test]
    fn phones(s in matching(&phone_pattern())) {
        prop_assert!(Phone::parse(&s).is_ok(), "{s:?}");
    }

    #[test]
    fn emails(s in matching(EMAIL_PATTERN).prop_filter("maxLength", within(MAX_EMAIL_CHARS))) {
        prop_assert!(Email::parse(&s).is_ok(), "{s:?}");
    }

    /// The pattern reads the start of an RFC 3339 instant; the rest is the
    /// format's, generated here with any offset and fraction.
    #[test]
    fn instants(
        start in matching(INSTANT_PATTERN),
        fraction in proptest::option::of("[0-9]{1,9}"),
        offset in proptest::option::of((0u32..24, 0u32..60, any::<bool>())),
    ) {
        // The generated month, day and hour may not exist (month 13): the
        // format, not the pattern, refuses those, so only real dates count.
        let mut text = start;
        if let Some(f) = fraction {
            text.push('.');
            text.push_str(&f);
        }
        match offset {
            None => text.push('Z'),
            Some((h, m, east)) => text.push_str(&format!("{}{h:02}:{m:02}", if east { '+' } else { '-' })),
        }
        if let Ok(instant) = DateTime::parse_from_rfc3339(&text) {
            prop_assert!(Timestamp::parse(instant.with_timezone(&Utc)).is_ok(), "{text}");
        }
    }
}
