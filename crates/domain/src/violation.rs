//! Validation failures that name the field they concern.
//!
//! Pointers are JSON Pointers (RFC 6901) relative to the document that was
//! validated; a caller that embeds the document elsewhere prefixes them.

use std::fmt;

/// Why one value was refused, without saying where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// A stable, machine-readable reason, e.g. `too_long`.
    pub code: &'static str,
    /// A sentence for humans.
    pub message: String,
}

impl FieldError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Places this error at a JSON pointer.
    pub fn at(self, pointer: impl Into<String>) -> Violation {
        Violation {
            pointer: pointer.into(),
            code: self.code,
            message: self.message,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FieldError {}

/// A refused value and where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub pointer: String,
    pub code: &'static str,
    pub message: String,
}

/// One or more violations; never empty when returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations(Vec<Violation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn one(violation: Violation) -> Self {
        Self(vec![violation])
    }

    pub fn push(&mut self, violation: Violation) {
        self.0.push(violation);
    }

    /// Records the error of `result` at `pointer` and returns its value, if any.
    pub fn check<T>(&mut self, pointer: &str, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(error.at(pointer));
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Violation> {
        self.0.iter()
    }

    pub fn into_vec(self) -> Vec<Violation> {
        self.0
    }

    /// Moves every pointer under `prefix`, for documents nested in another.
    pub fn prefixed(self, prefix: &str) -> Self {
        Self(
            self.0
                .into_iter()
                .map(|v| Violation {
                    pointer: format!("{prefix}{}", v.pointer),
                    ..v
                })
                .collect(),
        )
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn into_result<T>(self, value: T) -> Result<T, Self> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl FromIterator<Violation> for Violations {
    fn from_iter<I: IntoIterator<Item = Violation>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.pointer, v.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// Escapes one reference token of a JSON pointer (RFC 6901 §3).
pub fn pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_tokens_escape_tilde_before_slash() {
        assert_eq!(pointer_token("a/b~c"), "a~1b~0c");
    }

    #[test]
    fn prefixing_moves_every_pointer() {
        let v = Violations::one(FieldError::new("x", "bad").at("/name")).prefixed("/contacts/3");
        assert_eq!(
            v.iter().next().map(|v| v.pointer.as_str()),
            Some("/contacts/3/name")
        );
    }
}
