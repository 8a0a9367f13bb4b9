//! Thin handlers: extract, call the service, map to HTTP.

pub(crate) mod docs;
pub(crate) mod health;
pub(crate) mod job_types;
pub(crate) mod jobs;

use actix_web::middleware::from_fn;
use actix_web::{Route, web};

use crate::gate;
use crate::problem::ApiError;

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    let resources = [
        web::resource("/v1/jobs")
            .route(gated(web::post().to(jobs::submit)))
            .route(gated(web::get().to(jobs::list))),
        web::resource("/v1/jobs/{id}")
            .route(gated(web::get().to(jobs::get)))
            .route(gated(web::delete().to(jobs::cancel))),
        web::resource("/v1/jobs/{id}/events").route(gated(web::get().to(jobs::events))),
        web::resource("/v1/job-types").route(gated(web::get().to(job_types::list))),
        web::resource("/openapi.json").route(web::get().to(docs::openapi_json)),
        web::resource("/docs").route(web::get().to(docs::reference)),
    ];
    for resource in resources {
        config.service(resource.default_service(web::to(method_not_allowed)));
    }
    configure_operations(config);
}

/// A `/v1` route, behind the gate. The gate wraps each route rather than the whole scope, so that
/// a path or method that does not exist is a `404`/`405` whoever asks.
fn gated(route: Route) -> Route {
    route.wrap(from_fn(gate::admit))
}

/// Liveness, readiness and metrics: all that a worker process serves.
pub(crate) fn configure_operations(config: &mut web::ServiceConfig) {
    let resources = [
        web::resource("/healthz").route(web::get().to(health::healthz)),
        web::resource("/readyz").route(web::get().to(health::readyz)),
        web::resource("/metrics").route(web::get().to(health::metrics)),
    ];
    for resource in resources {
        config.service(resource.default_service(web::to(method_not_allowed)));
    }
}

async fn method_not_allowed() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}
