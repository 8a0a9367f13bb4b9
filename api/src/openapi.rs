use std::collections::BTreeMap;

use utoipa::openapi::Ref;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{claims, docs, health, job_types, jobs};

/// The OpenAPI 3.1 document, generated from the routes and types themselves.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Conveyor",
        description = "Asynchronous job API: submit a job (`202 Accepted`), then poll it (ETag, long-poll) or stream its changes (SSE). Errors are `application/problem+json` with a stable `code`.",
    ),
    paths(
        jobs::submit, jobs::list, jobs::get, jobs::cancel, jobs::events,
        claims::claim, claims::heartbeat, claims::complete, claims::fail,
        job_types::list, job_types::get, job_types::put, job_types::delete,
        job_types::rotate_secret,
        health::healthz, health::readyz, health::metrics,
        docs::openapi_json, docs::reference,
    ),
    components(schemas(
        conveyor_schemas::Job, conveyor_schemas::JobStatus, conveyor_schemas::JobTypeInfo,
        conveyor_schemas::FieldError, crate::service::SubmitJob, crate::problem::Problem,
        jobs::JobList, job_types::JobTypeList, conveyor_schemas::JobTypeSpec,
        conveyor_schemas::JobMode, conveyor_schemas::BackoffSpec,
        crate::type_registry::JobTypeRemoved, crate::type_registry::Registered,
        crate::type_registry::RotatedSecret, crate::claims::ClaimRequest,
        crate::claims::ClaimedJobs, crate::claims::ClaimedJob, crate::claims::Lease,
        crate::claims::HeartbeatRequest, crate::claims::HeartbeatAnswer,
        crate::claims::CompleteRequest, crate::claims::FailRequest,
    )),
    modifiers(&BearerJwt, &ProblemResponses),
    tags(
        (name = "jobs", description = "Submit, read, follow, cancel and list jobs."),
        (name = "job types", description = "The types jobs can have: built in, or registered by an operator."),
        (name = "workers", description = "Run jobs of `pull` types from any language: claim under a lease, heartbeat, complete or fail."),
        (name = "operations", description = "Health, readiness and metrics."),
    )
)]
pub struct ApiDoc;

struct BearerJwt;

impl Modify for BearerJwt {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let description = format!(
            "A JWT with claims `sub`, `tenant`, `exp` and `scope` (space-separated scopes), signed \
             HS256 with the server's secret, or RS256, ES256 or EdDSA with the key of the \
             server's JWKS that its `kid` names.\n\nScopes:\n\n{}\n`admin` also opens every other route.\n",
            scope_table(openapi)
        );
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(description))
                    .build(),
            ),
        );
    }
}

/// Which routes each scope opens, read from the routes' own `security` so that it cannot drift
/// from them.
fn scope_table(openapi: &utoipa::openapi::OpenApi) -> String {
    let mut routes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, item) in &openapi.paths.paths {
        let operations = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("PUT", &item.put),
        ];
        for (method, operation) in operations {
            for requirement in operation.iter().flat_map(|o| o.security.iter().flatten()) {
                // A requirement keeps its scopes private; its JSON is `{"bearer": [scopes]}`.
                let Ok(requirement) = serde_json::to_value(requirement) else {
                    continue;
                };
                let scopes = requirement["bearer"].as_array().into_iter().flatten();
                for scope in scopes.filter_map(|scope| scope.as_str()) {
                    routes
                        .entry(scope.to_owned())
                        .or_default()
                        .push(format!("`{method} {path}`"));
                }
            }
        }
    }
    routes
        .iter()
        .map(|(scope, routes)| format!("- `{scope}`: {}\n", routes.join(", ")))
        .collect()
}

/// The problems every route can answer, added to every operation here rather than repeated in
/// each route's annotation: 401 and 403 on routes that need a token, and any other failure (405
/// for a method the route does not take, an opaque 500) as the default response.
struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
            ];
            for operation in operations.into_iter().flatten() {
                add_problems(operation);
            }
        }
    }
}

fn add_problems(operation: &mut Operation) {
    let responses = &mut operation.responses.responses;
    if operation.security.is_some() {
        responses.insert(
            "401".into(),
            problem(
                "Missing, malformed, expired or wrongly signed token (WWW-Authenticate says which)",
            )
            .into(),
        );
        responses.insert(
            "403".into(),
            problem("The token lacks the scope this route requires (`insufficient_scope`); on submit, the tenant may not submit jobs of this type (`job_type_not_allowed`, field `type`)").into(),
        );
        responses.entry("429".into()).or_insert_with(|| {
            with_retry_after(problem(
                "The tenant's rate limit for this kind of request is used up (`rate_limited`); on submit, also its quota of unfinished jobs (`in_flight_quota_exceeded`). Answers that a rate limit applies to carry `RateLimit-Policy` and `RateLimit` (IETF draft-ietf-httpapi-ratelimit-headers)",
            ))
            .into()
        });
    }
    if operation.request_body.is_some() {
        responses.insert(
            "408".into(),
            problem("The body did not arrive in time (`request_timeout`)").into(),
        );
    }
    responses.insert(
        "431".into(),
        problem("Request headers over the limit (`headers_too_large`)").into(),
    );
    responses.insert(
        "default".into(),
        problem(
            "Any other failure: 405 method_not_allowed, 500 internal (opaque; the cause is logged)",
        )
        .into(),
    );
}

fn with_retry_after(mut response: Response) -> Response {
    response.headers.insert(
        "Retry-After".into(),
        HeaderBuilder::new()
            .schema(Object::with_type(Type::Integer))
            .description(Some("Seconds until the request would pass"))
            .build(),
    );
    response
}

fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}
