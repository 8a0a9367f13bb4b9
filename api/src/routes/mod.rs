//! Thin handlers: extract, call the service, map to HTTP.

pub(crate) mod docs;
pub(crate) mod health;
pub(crate) mod job_types;
pub(crate) mod jobs;

use actix_web::web;

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/v1/jobs")
                .route(web::post().to(jobs::submit))
                .route(web::get().to(jobs::list)),
        )
        .service(
            web::resource("/v1/jobs/{id}")
                .route(web::get().to(jobs::get))
                .route(web::delete().to(jobs::cancel)),
        )
        .route("/v1/jobs/{id}/events", web::get().to(jobs::events))
        .route("/v1/job-types", web::get().to(job_types::list))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .route("/openapi.json", web::get().to(docs::openapi_json))
        .route("/docs", web::get().to(docs::reference));
}
