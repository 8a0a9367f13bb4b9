use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{docs, health, job_types, jobs};

/// The OpenAPI 3.1 document, generated from the routes and types themselves.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Conveyor",
        description = "Asynchronous job API: submit a job (`202 Accepted`), then poll it (ETag, long-poll) or stream its changes (SSE). Errors are `application/problem+json` with a stable `code`.",
    ),
    paths(
        jobs::submit, jobs::list, jobs::get, jobs::cancel, jobs::events,
        job_types::list, health::healthz, health::readyz, health::metrics,
        docs::openapi_json, docs::reference,
    ),
    components(schemas(
        conveyor_schemas::Job, conveyor_schemas::JobStatus, conveyor_schemas::JobTypeInfo,
        conveyor_schemas::FieldError, crate::service::SubmitJob, crate::problem::Problem,
        jobs::JobList, job_types::JobTypeList,
    )),
    modifiers(&BearerJwt),
    tags(
        (name = "jobs", description = "Submit, read, follow, cancel and list jobs."),
        (name = "operations", description = "Health, readiness and metrics."),
    )
)]
pub struct ApiDoc;

struct BearerJwt;

impl Modify for BearerJwt {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 JWT with claims `sub`, `tenant`, `exp` and `scope` (space-separated: \
                         jobs:write, jobs:read, events:read, admin).",
                    ))
                    .build(),
            ),
        );
    }
}
