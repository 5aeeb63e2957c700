use segments_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer in time")]
    RedisTimeout,
    #[error("segment {0} cannot be compiled: {1}")]
    Sql(segments_domain::SegmentId, segments_conditions::SqlError),
    #[error("could not enqueue a job: {0}")]
    Enqueue(String),
    #[error("the lease this work ran under lapsed; another process holds it")]
    LeaseLost,
}
