//! Instants as Segments stores and compares them.

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use crate::violation::FieldError;

/// A UTC instant, truncated to whole microseconds, in years 1000–9999.
///
/// Why the restrictions: PostgreSQL keeps microseconds, so finer instants
/// would compare differently in memory and in SQL; four-digit years keep the
/// text form SQLite stores ordered like the instants themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(DateTime<Utc>);

/// A regular expression (ECMA-262) that, beside `format: date-time`, says
/// which instants [`Timestamp::parse`] takes, for schemas: its years are
/// 1000-9999 in UTC, and an offset moves an instant by less than a day, so
/// the pattern states years 1001-9998 (exact at any offset) and no leap
/// second. It reads the start only; the format says the rest.
pub const INSTANT_PATTERN: &str = "^(?:100[1-9]|10[1-9][0-9]|1[1-9][0-9]{2}|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-5][0-9]";

impl Timestamp {
    pub fn parse(value: DateTime<Utc>) -> Result<Self, FieldError> {
        // chrono keeps a leap second (`23:59:60`) as a 60th second's worth
        // of nanoseconds: no database stores one, and UTC clocks here
        // never show one, so it is refused rather than shifted.
        if value.timestamp_subsec_nanos() >= 1_000_000_000 {
            return Err(FieldError::new(
                "invalid_date",
                "leap seconds (second 60) are not accepted",
            ));
        }
        let year = value.year();
        if !(1000..=9999).contains(&year) {
            return Err(FieldError::new(
                "out_of_range",
                format!("year {year} is outside 1000-9999"),
            ));
        }
        Ok(Self(value.trunc_subsecs(6)))
    }

    /// Parses an RFC 3339 instant, or a bare `YYYY-MM-DD` date meaning its UTC midnight.
    pub fn parse_str(text: &str) -> Result<Self, FieldError> {
        if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
            return Self::parse(instant.with_timezone(&Utc));
        }
        // chrono's `%m` and `%d` also take one digit ("2024-1-1"): the
        // shape is checked first, so a date is written one way only.
        let shaped = text.len() == 10
            && text.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        if shaped
            && let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            && let Some(midnight) = date.and_hms_opt(0, 0, 0)
        {
            return Self::parse(midnight.and_utc());
        }
        Err(FieldError::new(
            "invalid_date",
            "expected an RFC 3339 date-time (2024-05-01T10:00:00Z) or a date (2024-05-01)",
        ))
    }

    /// Wraps an instant read back from the store (see `Channel::from_stored`).
    pub fn from_stored(value: DateTime<Utc>) -> Self {
        Self(value.trunc_subsecs(6))
    }

    /// The current instant, normalised like every stored one.
    pub fn now() -> Self {
        Self(Utc::now().trunc_subsecs(6))
    }

    pub fn get(self) -> DateTime<Utc> {
        self.0
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(value: Timestamp) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn dates_are_written_one_way_and_leap_seconds_are_refused() {
        for refused in [
            "1969-12-31T23:59:60Z",
            "2016-12-31T23:59:60Z",
            "2024-1-1",
            "2024-01-1",
            "+2024-01-01",
        ] {
            assert!(Timestamp::parse_str(refused).is_err(), "{refused}");
        }
        for accepted in [
            "2024-01-01",
            "2024-02-29T10:00:00Z",
            "2024-05-01T10:00:00.123456+02:00",
        ] {
            assert!(Timestamp::parse_str(accepted).is_ok(), "{accepted}");
        }
    }

    #[test]
    fn nanoseconds_are_truncated_to_microseconds() {
        let t = Utc
            .timestamp_opt(1_700_000_000, 123_456_789)
            .single()
            .map(Timestamp::parse);
        assert_eq!(
            t.and_then(Result::ok)
                .map(|t| t.get().timestamp_subsec_nanos()),
            Some(123_456_000)
        );
    }

    #[test]
    fn bare_dates_mean_utc_midnight() {
        assert_eq!(
            Timestamp::parse_str("2024-02-29").map(|t| t.get().to_rfc3339()),
            Ok("2024-02-29T00:00:00+00:00".to_owned())
        );
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        assert_eq!(
            Timestamp::parse_str("2024-01-01T01:00:00+02:00").map(|t| t.get().to_rfc3339()),
            Ok("2023-12-31T23:00:00+00:00".to_owned())
        );
    }

    #[test]
    fn five_digit_years_are_refused() {
        assert!(Timestamp::parse_str("+10000-01-01T00:00:00Z").is_err());
    }
}
