use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the process serves requests.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ok` when every dependency answers.
    pub status: String,
    /// `ok`, or why the database did not answer.
    pub database: String,
}
