//! Cursor pagination parameters.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use segments_domain::limits::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::problem::ApiError;

/// Cursors are opaque to clients: a version tag and the position, base64url.
const CURSOR_VERSION: &str = "v1:";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1-1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page; omit for the first page.
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn limit(&self) -> Result<u64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_PAGE_SIZE),
            Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::InvalidParameter {
                name: "limit".into(),
                message: format!("{n} is outside 1-{MAX_PAGE_SIZE}"),
            }),
        }
    }

    /// The position encoded in the cursor, if any.
    pub fn position(&self) -> Result<Option<String>, ApiError> {
        let Some(cursor) = &self.cursor else {
            return Ok(None);
        };
        let invalid = || ApiError::InvalidParameter {
            name: "cursor".into(),
            message: "not a cursor returned by this endpoint".into(),
        };
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        if segments_domain::storable(&text).is_err() {
            return Err(invalid());
        }
        text.strip_prefix(CURSOR_VERSION)
            .map(|p| Some(p.to_owned()))
            .ok_or_else(invalid)
    }

    /// The position as an id, for endpoints ordered by id.
    pub fn after_id(&self) -> Result<Option<i64>, ApiError> {
        self.position()?
            .map(|p| {
                p.parse().map_err(|_| ApiError::InvalidParameter {
                    name: "cursor".into(),
                    message: "not a cursor returned by this endpoint".into(),
                })
            })
            .transpose()
    }
}

pub fn encode_cursor(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_VERSION}{position}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let p = PageParams {
            limit: None,
            cursor: Some(encode_cursor("42")),
        };
        assert_eq!(p.after_id().ok().flatten(), Some(42));
    }

    #[test]
    fn foreign_cursors_are_refused() {
        let p = PageParams {
            limit: None,
            cursor: Some("bm9wZQ".into()),
        };
        assert!(p.after_id().is_err());
    }
}
