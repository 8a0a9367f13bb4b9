//! Thin handlers: extract, call the service, map to HTTP.

pub(crate) mod claims;
pub(crate) mod docs;
pub(crate) mod health;
pub(crate) mod job_types;
pub(crate) mod jobs;

use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, Resource, Route, web};

use crate::gate;
use crate::problem::ApiError;

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    let resources = [
        (
            "GET, POST",
            web::resource("/v1/jobs")
                .route(gated(web::post().to(jobs::submit)))
                .route(gated(web::get().to(jobs::list))),
        ),
        (
            "POST",
            web::resource("/v1/jobs/claim").route(gated(web::post().to(claims::claim))),
        ),
        // Before `/v1/jobs/{id}`, which would take `claim` for an id.
        (
            "GET, DELETE",
            web::resource("/v1/jobs/{id}")
                .route(gated(web::get().to(jobs::get)))
                .route(gated(web::delete().to(jobs::cancel))),
        ),
        (
            "GET",
            web::resource("/v1/jobs/{id}/events").route(gated(web::get().to(jobs::events))),
        ),
        (
            "POST",
            web::resource("/v1/jobs/{id}/heartbeat")
                .route(gated(web::post().to(claims::heartbeat))),
        ),
        (
            "POST",
            web::resource("/v1/jobs/{id}/complete").route(gated(web::post().to(claims::complete))),
        ),
        (
            "POST",
            web::resource("/v1/jobs/{id}/fail").route(gated(web::post().to(claims::fail))),
        ),
        (
            "GET",
            web::resource("/v1/job-types").route(gated(web::get().to(job_types::list))),
        ),
        (
            "GET, PUT, DELETE",
            web::resource("/v1/job-types/{name}")
                .route(gated(web::get().to(job_types::get)))
                .route(gated(web::put().to(job_types::put)))
                .route(gated(web::delete().to(job_types::delete))),
        ),
        (
            "POST",
            web::resource("/v1/job-types/{name}/secret/rotate")
                .route(gated(web::post().to(job_types::rotate_secret))),
        ),
        (
            "GET",
            web::resource("/openapi.json").route(web::get().to(docs::openapi_json)),
        ),
        (
            "GET",
            web::resource("/docs").route(web::get().to(docs::reference)),
        ),
    ];
    for (allow, resource) in resources {
        config.service(refusing_other_methods(resource, allow));
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
        config.service(refusing_other_methods(resource, "GET"));
    }
}

/// Answers a method the resource does not take with a `405` naming those it takes (`Allow`).
fn refusing_other_methods(resource: Resource, allow: &'static str) -> Resource {
    resource.default_service(web::to(move || async move {
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed(allow))
    }))
}
