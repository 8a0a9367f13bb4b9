use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::metrics;
use crate::readiness::Readiness;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Object)))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: broker, database and cache all answer.
///
/// `503` names each dependency that does not.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Object),
        (status = 503, description = "A dependency is missing; the body says which", body = Object),
    ))]
pub(crate) async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let checks = readiness.check().await;
    let ready = checks.values().all(|state| state == "ok");
    let body = json!({ "status": if ready { "ready" } else { "not ready" }, "checks": checks });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(readiness: web::Data<Readiness>) -> HttpResponse {
    readiness.sample();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics::render())
}
