use actix_web::{HttpResponse, get, web};

use crate::AppState;
use crate::wire::health::{Health, Readiness};

/// Liveness: the process is up and serving.
#[utoipa::path(operation_id = "getHealth", tag = "health", responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the database answers.
#[utoipa::path(
    operation_id = "getReadiness",
    tag = "health",
    responses(
        (status = 200, body = Readiness),
        (status = 503, body = Readiness, description = "A dependency does not answer")
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // Redis is not required to serve: writes go to the database, the sets
    // catch up once Redis is back. Its absence is reported, not fatal.
    let redis = match &state.redis {
        None => "disabled".to_owned(),
        Some(r) => match r.materializer.ping().await {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("degraded: {e}"),
        },
    };
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(Readiness {
            status: if redis.starts_with("degraded") {
                "degraded"
            } else {
                "ok"
            }
            .into(),
            database: "ok".into(),
            redis,
        }),
        Err(e) => HttpResponse::ServiceUnavailable().json(Readiness {
            status: "unavailable".into(),
            database: e.to_string(),
            redis,
        }),
    }
}
