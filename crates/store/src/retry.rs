//! Bounded retries of transactions the database abandoned on its own to
//! resolve a conflict between writers — a deadlock broken by PostgreSQL
//! (40P01), a serialization failure (40001), SQLite's busy database — so
//! that a valid write never answers 5xx because another write ran beside it.
//! Each attempt is a whole transaction: the failed one has rolled back.

use std::time::Duration;

use rand::Rng;

use segments_domain::WorkspaceId;

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
    /// Runs `attempt`, a write to `workspace`, until it succeeds, fails for
    /// good, or has failed transiently `ATTEMPTS` times.
    ///
    /// A write that fails for good is told apart from one whose workspace
    /// is gone: a workspace deleted from the database stays authenticated
    /// for a moment (the API caches keys), and its writes then break
    /// foreign keys, find nothing or break the rules of a catalog that is
    /// gone — that is `WorkspaceGone` (401), not a 500, 404 or 422.
    pub(crate) async fn retrying<T>(
        &self,
        workspace: WorkspaceId,
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
                Err(e) => return Err(self.gone_or(workspace, e).await),
                other => return other,
            }
        }
    }
}

impl Store {
    /// `WorkspaceGone` if `workspace` no longer exists, else `err`.
    pub(crate) async fn gone_or(&self, workspace: WorkspaceId, err: StoreError) -> StoreError {
        match self.workspace_exists(workspace).await {
            Ok(false) => StoreError::WorkspaceGone,
            _ => err,
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
