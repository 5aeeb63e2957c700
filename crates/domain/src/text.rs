//! Short human-chosen names: tags, workspaces, API keys.

use std::fmt;

use crate::limits::{MAX_LABEL_CHARS, MAX_TAG_CHARS};
use crate::violation::FieldError;

/// A regular expression (ECMA-262, as JSON Schema reads it) for the text
/// [`TagName::parse`] and [`Label::parse`] accept: at least one visible
/// character and no control character. Schemas state it; the parsers are
/// the rule (a test holds the two together).
pub const VISIBLE_TEXT_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";

/// A regular expression for non-empty text free of control characters, as
/// `ExternalId::parse` takes it (untrimmed), for schemas.
pub const CONTROL_FREE_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]+$";

/// Refuses text that a database cannot store alike: PostgreSQL rejects NUL
/// (U+0000) in `text` where SQLite keeps it, so a value accepted on one
/// backend would fail on the other. Free text (attribute values, names
/// looked up, condition values) passes through here.
pub fn storable(raw: &str) -> Result<(), FieldError> {
    if raw.contains('\0') {
        return Err(FieldError::new(
            "nul_character",
            "must not contain the NUL character (U+0000)",
        ));
    }
    Ok(())
}

/// Trims `raw` and checks it is non-empty, at most `max` characters and free of
/// control characters.
pub(crate) fn bounded_text(raw: &str, max: usize) -> Result<String, FieldError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(FieldError::new("empty", "must not be empty"));
    }
    let chars = trimmed.chars().count();
    if chars > max {
        return Err(FieldError::new(
            "too_long",
            format!("is {chars} characters long; at most {max} are allowed"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(FieldError::new(
            "control_character",
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// A tag name as the user spelled it. Tags are unique per workspace ignoring
/// case: [`TagName::key`] is the form uniqueness and matching use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagName(String);

impl TagName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = bounded_text(raw, MAX_TAG_CHARS)?;
        // The folded form is what is stored and indexed, and folding can
        // lengthen a name ("İ" folds to two characters): it must fit too.
        let folded = tag_key(&name).chars().count();
        if folded > MAX_TAG_CHARS {
            return Err(FieldError::new(
                "too_long",
                format!(
                    "folds to {folded} characters when case is ignored; at most {MAX_TAG_CHARS} are allowed"
                ),
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form: two names with the same key are the same tag.
    pub fn key(&self) -> String {
        tag_key(&self.0)
    }
}

/// Case-folds a tag name. Lowercasing (not ASCII-only) so that "Ünïcode" and
/// "üNÏCODE" are one tag, identically in memory, SQLite and PostgreSQL,
/// because the folded form is computed here and stored, never by the database.
pub fn tag_key(name: &str) -> String {
    name.trim().to_lowercase()
}

impl fmt::Display for TagName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A short human label: the name of a workspace or of an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label(String);

impl Label {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        bounded_text(raw, MAX_LABEL_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_names_are_trimmed_but_keep_their_case() {
        assert_eq!(
            TagName::parse("  VIP ").map(|t| t.as_str().to_owned()),
            Ok("VIP".into())
        );
    }

    #[test]
    fn tag_keys_ignore_case_beyond_ascii() {
        assert_eq!(tag_key("ÜBER"), tag_key("über"));
    }

    #[test]
    fn empty_and_overlong_tags_are_refused() {
        assert_eq!(TagName::parse("   ").map_err(|e| e.code), Err("empty"));
        assert_eq!(
            TagName::parse(&"x".repeat(65)).map_err(|e| e.code),
            Err("too_long")
        );
    }

    #[test]
    fn control_characters_are_refused() {
        assert_eq!(
            TagName::parse("a\u{0}b").map_err(|e| e.code),
            Err("control_character")
        );
    }
}
