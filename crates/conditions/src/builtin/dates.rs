//! Date predicates shared by `first_contacted` and date attributes, so that
//! both mean exactly the same thing.

use chrono::Duration;
use sea_query::{Expr, ExprTrait};
use segments_domain::Timestamp;

/// A predicate on one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatePredicate {
    Before(Timestamp),
    After(Timestamp),
    /// Inclusive at both ends.
    Between(Timestamp, Timestamp),
    /// `now - days <= t <= now`.
    WithinLastDays(u32),
    /// `t < now - days`.
    MoreThanDaysAgo(u32),
}

fn days_before(now: Timestamp, days: u32) -> Timestamp {
    Timestamp::from_stored(now.get() - Duration::days(i64::from(days)))
}

impl DatePredicate {
    pub fn holds(self, t: Timestamp, now: Timestamp) -> bool {
        match self {
            Self::Before(x) => t < x,
            Self::After(x) => t > x,
            Self::Between(a, b) => a <= t && t <= b,
            Self::WithinLastDays(d) => days_before(now, d) <= t && t <= now,
            Self::MoreThanDaysAgo(d) => t < days_before(now, d),
        }
    }

    /// The same predicate on a non-NULL column.
    pub fn sql(self, column: Expr, now: Timestamp) -> Expr {
        match self {
            Self::Before(x) => column.lt(x.get()),
            Self::After(x) => column.gt(x.get()),
            Self::Between(a, b) => column.clone().gte(a.get()).and(column.lte(b.get())),
            Self::WithinLastDays(d) => column
                .clone()
                .gte(days_before(now, d).get())
                .and(column.lte(now.get())),
            Self::MoreThanDaysAgo(d) => column.lt(days_before(now, d).get()),
        }
    }

    pub fn time_dependent(self) -> bool {
        matches!(self, Self::WithinLastDays(_) | Self::MoreThanDaysAgo(_))
    }
}
