//! Thin handlers: extract, call the service, map to HTTP.

pub(crate) mod docs;
pub(crate) mod health;
pub(crate) mod job_types;
pub(crate) mod jobs;

use actix_web::middleware::from_fn;
use actix_web::web;

use crate::gate;
use crate::problem::ApiError;

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    let resources = [
        web::resource("/jobs")
            .route(web::post().to(jobs::submit))
            .route(web::get().to(jobs::list)),
        web::resource("/jobs/{id}")
            .route(web::get().to(jobs::get))
            .route(web::delete().to(jobs::cancel)),
        web::resource("/jobs/{id}/events").route(web::get().to(jobs::events)),
        web::resource("/job-types").route(web::get().to(job_types::list)),
    ];
    let mut v1 = web::scope("/v1").wrap(from_fn(gate::admit));
    for resource in resources {
        v1 = v1.service(resource.default_service(web::to(method_not_allowed)));
    }
    config.service(v1);
    let resources = [
        web::resource("/openapi.json").route(web::get().to(docs::openapi_json)),
        web::resource("/docs").route(web::get().to(docs::reference)),
    ];
    for resource in resources {
        config.service(resource.default_service(web::to(method_not_allowed)));
    }
    configure_operations(config);
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
