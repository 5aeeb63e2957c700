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

    /// The instants whose truth may differ between `from` and `to`
    /// (`from <= to`): the edges the predicate's window slid over, as
    /// inclusive ranges; `None` for an absolute predicate, which time never
    /// moves.
    pub fn window(self, from: Timestamp, to: Timestamp) -> Option<Vec<(Timestamp, Timestamp)>> {
        let lower_edge = |d| (days_before(from, d), days_before(to, d));
        match self {
            // Both edges move: `now - days`, and `now` itself (an instant in
            // the future enters once it comes).
            Self::WithinLastDays(d) => Some(vec![lower_edge(d), (from, to)]),
            Self::MoreThanDaysAgo(d) => Some(vec![lower_edge(d)]),
            Self::Before(_) | Self::After(_) | Self::Between(..) => None,
        }
    }

    /// `window` on a non-NULL column.
    pub fn window_sql(self, column: Expr, from: Timestamp, to: Timestamp) -> Option<Expr> {
        self.window(from, to)?
            .into_iter()
            .map(|(a, b)| column.clone().gte(a.get()).and(column.clone().lte(b.get())))
            .reduce(ExprTrait::or)
    }
}

#[cfg(test)]
mod window_tests {
    use proptest::prelude::*;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_stored(chrono::DateTime::from_timestamp(seconds, 0).unwrap_or_default())
    }

    proptest! {
        /// Every instant whose truth flips between `from` and `to` is in
        /// the window: time-driven updates re-decide exactly those.
        #[test]
        fn every_flip_is_inside_the_window(
            base in 1_600_000_000i64..1_700_000_000,
            offset in -100i64 * 86_400..100 * 86_400,
            elapsed in 0i64..10 * 86_400,
            days in 0u32..60,
            within in any::<bool>(),
        ) {
            let predicate = if within {
                DatePredicate::WithinLastDays(days)
            } else {
                DatePredicate::MoreThanDaysAgo(days)
            };
            let (from, to) = (at(base), at(base + elapsed));
            // Instants anywhere, and near the lower edge, where flips happen.
            for t in [at(base + offset), at(base - i64::from(days) * 86_400 + offset % 3_600)] {
                if predicate.holds(t, from) != predicate.holds(t, to) {
                    let window = predicate.window(from, to).unwrap_or_default();
                    prop_assert!(
                        window.iter().any(|(a, b)| *a <= t && t <= *b),
                        "{t:?} flipped outside {window:?}"
                    );
                }
            }
        }
    }
}
