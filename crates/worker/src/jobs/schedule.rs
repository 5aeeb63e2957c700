//! The reconciler's cron tick, and the vacuuming of finished jobs it runs.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_cron::Tick;
use apalis_redis::RedisStorage;

use crate::{Materializer, WorkerError};

use super::protocol::Envelope;
use super::queue::queue_config;

pub(super) async fn tick(
    _tick: Tick,
    materializer: Data<Arc<Materializer>>,
    hold: Data<Duration>,
) -> Result<(), BoxDynError> {
    match materializer.reconcile_exclusively(*hold).await? {
        None => tracing::debug!("another worker is reconciling"),
        Some(_) => vacuum(&materializer).await,
    }
    Ok(())
}

async fn vacuum(materializer: &Materializer) {
    match materializer.vacuum_jobs().await {
        Ok(n) => tracing::debug!(jobs = n, "vacuumed finished jobs"),
        Err(e) => tracing::warn!(error = %e, "vacuuming finished jobs failed"),
    }
}

impl Materializer {
    /// Deletes finished jobs' data, metadata and ids: apalis-redis keeps them
    /// for ever otherwise. The reconcile tick runs it under its lock.
    pub async fn vacuum_jobs(&self) -> Result<usize, WorkerError> {
        use apalis_core::backend::Vacuum;
        let config = queue_config(&self.keys.queue(), Duration::from_secs(5));
        let done = config.done_jobs_set();
        let mut storage = RedisStorage::<Envelope>::new(self.queue_redis()).with_config(config);
        let vacuumed = storage
            .vacuum()
            .await
            .map_err(|e| WorkerError::Enqueue(e.to_string()))?;
        let mut conn = self.redis();
        let _: i64 = redis::cmd("DEL").arg(done).query_async(&mut conn).await?;
        Ok(vacuumed)
    }
}
