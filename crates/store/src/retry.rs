//! Bounded retries of transactions the database abandoned on its own to
//! resolve a conflict between writers — a deadlock broken by PostgreSQL
//! (40P01), a serialization failure (40001), SQLite's busy database — so
//! that a valid write never answers 5xx because another write ran beside it.
//! Each attempt is a whole transaction: the failed one has rolled back.

use std::time::Duration;

use rand::Rng;

use crate::{Store, StoreError};

/// Attempts of one write, the first included.
const ATTEMPTS: u32 = 10;

/// The wait before attempt `n + 1`: exponential from 2 ms, capped at 100 ms,
/// with full jitter so that the writers that collided do not collide again.
fn backoff(n: u32) -> Duration {
    let ceiling = (2u64 << n.min(6)).min(100);
    Duration::from_micros(rand::rng().random_range(500..=ceiling * 1_000))
}

impl Store {
    /// Runs `attempt` until it succeeds, fails for good, or has failed
    /// transiently `ATTEMPTS` times.
    pub(crate) async fn retrying<T>(
        &self,
        mut attempt: impl AsyncFnMut() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut n = 1;
        loop {
            match attempt().await {
                Err(e) if e.is_transient() && n < ATTEMPTS => {
                    tracing::debug!(error = %e, attempt = n, "write conflicted with another; retrying");
                    tokio::time::sleep(backoff(n)).await;
                    n += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for n in 1..20 {
            let wait = backoff(n);
            assert!(
                wait.as_micros() >= 500 && wait.as_millis() <= 100,
                "{wait:?}"
            );
        }
    }
}
