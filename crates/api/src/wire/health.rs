use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the process serves requests.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ok` when every dependency answers, `degraded` when Redis does not,
    /// `unavailable` when the database does not.
    pub status: String,
    /// `ok`, or why the database did not answer.
    pub database: String,
    /// `ok`, `disabled`, or `degraded: <why>` (the API keeps serving; the
    /// materialized sets catch up once Redis is back).
    pub redis: String,
}
