//! The reconciler's lease: one Redis key held by one process at a time,
//! renewed while its holder works.
//!
//! A lease that is not renewed lapses while a long reconcile still runs, and
//! a second reconciler then starts beside the first; so the holder renews it
//! every third of its hold. A holder whose renewal finds the key gone or
//! taken knows it lost the lease (`is_held`) and stops at its next step. What
//! a lapsed holder may still write before it notices cannot undo a newer
//! holder's work: every write it makes is ordered or idempotent — builds
//! swap in only over older ones (catalog version, then snapshot), decisions
//! are version-guarded, the sweep marker only moves forward and a deleted
//! segment's keys are dropped only when no newer build wrote them (see the
//! scripts).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::WorkerError;
use crate::connection::SetsConnection;

/// Extends the lease if its holder still holds it.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

/// Deletes the lease if its holder still holds it.
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// A held lease. Dropping it stops the renewal; `release` also frees the key.
#[derive(Debug)]
pub(crate) struct Lease {
    key: String,
    token: String,
    held: Arc<AtomicBool>,
    renewal: tokio::task::JoinHandle<()>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Lease {
    /// Takes the lease at `key` for `hold`, renewed every `hold / 3`, unless
    /// another process holds it.
    pub(crate) async fn acquire(
        conn: &SetsConnection,
        key: String,
        hold: Duration,
    ) -> Result<Option<Self>, WorkerError> {
        let token = crate::materializer::token();
        let mut c = conn.clone();
        let acquired: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis(hold))
            .query_async(&mut c)
            .await?;
        if acquired.is_none() {
            return Ok(None);
        }
        let held = Arc::new(AtomicBool::new(true));
        let renewal = tokio::spawn(renew(
            conn.clone(),
            key.clone(),
            token.clone(),
            hold,
            held.clone(),
        ));
        Ok(Some(Self {
            key,
            token,
            held,
            renewal,
        }))
    }

    /// Whether the last renewal found the lease still ours.
    pub(crate) fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Fails with `LeaseLost` once the lease is no longer ours.
    pub(crate) fn check(&self) -> Result<(), WorkerError> {
        if self.is_held() {
            Ok(())
        } else {
            Err(WorkerError::LeaseLost)
        }
    }

    /// Frees the lease, if still ours.
    pub(crate) async fn release(self, conn: &SetsConnection) -> Result<(), WorkerError> {
        self.renewal.abort();
        let mut c = conn.clone();
        let _: i64 = redis::Script::new(RELEASE)
            .key(&self.key)
            .arg(&self.token)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

async fn renew(
    conn: SetsConnection,
    key: String,
    token: String,
    hold: Duration,
    held: Arc<AtomicBool>,
) {
    let script = redis::Script::new(RENEW);
    loop {
        tokio::time::sleep(hold / 3).await;
        let mut c = conn.clone();
        match script
            .key(&key)
            .arg(&token)
            .arg(millis(hold))
            .invoke_async::<i64>(&mut c)
            .await
        {
            Ok(1) => {}
            Ok(_) => {
                tracing::warn!(lease = %key, "lease lost: another process holds it now");
                held.store(false, Ordering::Release);
                return;
            }
            // Redis unreachable: keep trying; if the lease lapses meanwhile,
            // the next answer says so.
            Err(e) => tracing::debug!(error = %e, lease = %key, "lease not renewed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Lease;

    /// Against the Redis every test run has (scripts/test.sh starts one).
    async fn conn() -> crate::SetsConnection {
        let client =
            redis::Client::open("redis://127.0.0.1:6379").unwrap_or_else(|e| panic!("{e}"));
        crate::SetsConnection::Single(
            redis::aio::ConnectionManager::new(client)
                .await
                .unwrap_or_else(|e| panic!("redis: {e}")),
        )
    }

    #[tokio::test]
    async fn a_lease_is_renewed_while_held_and_lost_when_taken() {
        let conn = conn().await;
        let key = format!("segtest-lease-{}", crate::materializer::token());
        let hold = Duration::from_millis(300);
        let lease = Lease::acquire(&conn, key.clone(), hold)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("the key is free"));
        // Three holds later it is still ours: renewed, never lapsed.
        tokio::time::sleep(hold * 3).await;
        assert!(lease.is_held());
        let second = Lease::acquire(&conn, key.clone(), hold)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(second.is_none(), "a held lease was taken");
        // Someone else takes the key: the next renewal says so.
        let mut c = conn.clone();
        let () = redis::AsyncCommands::set(&mut c, &key, "another")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(hold).await;
        assert!(!lease.is_held());
        assert!(lease.check().is_err());
        // Releasing a lost lease leaves the new holder's key alone.
        lease.release(&conn).await.unwrap_or_else(|e| panic!("{e}"));
        let holder: Option<String> = redis::AsyncCommands::get(&mut c, &key)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(holder.as_deref(), Some("another"));
        let _: () = redis::AsyncCommands::del(&mut c, &key)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
