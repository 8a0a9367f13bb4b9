use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use conveyor_schemas::{JobTypeInfo, JobTypeSpec};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::{Admin, JobsRead, Scoped};
use crate::input_limits::InputLimits;
use crate::problem::{ApiError, Problem};
use crate::routes::jobs::{body_as, query_params};
use crate::service::JobService;
use crate::tenants::TenantLimits;
use crate::type_registry::{JobTypeRemoved, Registered, RotatedSecret, TypeRegistry};

#[derive(Serialize, ToSchema)]
pub struct JobTypeList {
    pub items: Vec<JobTypeInfo>,
}

/// List job types
///
/// Each type's name, description, mode and the JSON Schema its payloads must satisfy: the
/// built-in types and those registered, as far as the caller's tenant may submit them.
#[utoipa::path(
    get, path = "/v1/job-types", tag = "job types",
    responses(
        (status = 200, description = "The job types", body = JobTypeList),
    ),
    security(("bearer" = ["jobs:read"]))
)]
pub(crate) async fn list(
    _caller: Scoped<JobsRead>,
    limits: web::ReqData<Arc<TenantLimits>>,
    service: web::Data<JobService>,
) -> Result<HttpResponse, ApiError> {
    let allowed = |name: &str| {
        limits
            .job_types
            .as_ref()
            .is_none_or(|types| types.contains(name))
    };
    Ok(HttpResponse::Ok().json(JobTypeList {
        items: service
            .catalog()
            .types()
            .filter(|info| allowed(&info.name))
            .cloned()
            .collect(),
    }))
}

/// Register or replace a job type
///
/// Deployment-wide: jobs of the type can be submitted by every tenant the tenants file does not
/// restrict. Every api and worker process sees the change within a second. Only `pull` types
/// (run by HTTP workers through `POST /v1/jobs/claim`) can be registered so far.
#[utoipa::path(
    put, path = "/v1/job-types/{name}", tag = "job types",
    params(("name" = String, Path, description = "`[a-z0-9][a-z0-9._-]{0,62}`")),
    request_body = JobTypeSpec,
    responses(
        (status = 201, description = "Registered; a push type's new signing secret is in `secret`, shown this once", body = Registered),
        (status = 200, description = "Replaced", body = Registered),
        (status = 422, description = "An invalid name or field, or a payload_schema that is not a JSON Schema; `field` names it", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn put(
    _caller: Scoped<Admin>,
    name: web::Path<String>,
    body: web::Json<Value>,
    registry: web::Data<TypeRegistry>,
    input: web::Data<InputLimits>,
) -> Result<HttpResponse, ApiError> {
    let spec: JobTypeSpec = body_as(body.into_inner(), &input)?;
    let registered = registry.put(&name, spec).await?;
    let mut response = if registered.created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(registered))
}

/// Rotate a push type's signing secret
///
/// Deliveries are signed with the new secret from the next one on (every worker sees it within a
/// second); the old one stops working then. The new secret is shown this once.
#[utoipa::path(
    post, path = "/v1/job-types/{name}/secret/rotate", tag = "job types",
    params(("name" = String, Path, description = "A push type's name")),
    responses(
        (status = 200, description = "The new secret", body = RotatedSecret),
        (status = 404, description = "No such type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a push type (`field`: `name`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn rotate_secret(
    _caller: Scoped<Admin>,
    name: web::Path<String>,
    registry: web::Data<TypeRegistry>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(registry.rotate_secret(&name).await?))
}

/// Get a job type
#[utoipa::path(
    get, path = "/v1/job-types/{name}", tag = "job types",
    params(("name" = String, Path, description = "The type's name")),
    responses(
        (status = 200, description = "The type", body = JobTypeInfo),
        (status = 404, description = "No such type", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["jobs:read"]))
)]
pub(crate) async fn get(
    _caller: Scoped<JobsRead>,
    name: web::Path<String>,
    registry: web::Data<TypeRegistry>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(registry.get(&name).await?))
}

/// Remove a job type
///
/// Refused (`409`) while the type has unfinished jobs, unless `?force=true`: then they fail, with
/// an error that says why, and are dead-lettered.
#[utoipa::path(
    delete, path = "/v1/job-types/{name}", tag = "job types",
    params(
        ("name" = String, Path, description = "The type's name"),
        ("force" = Option<bool>, Query, description = "Fail the type's unfinished jobs rather than refuse"),
    ),
    responses(
        (status = 200, description = "Removed", body = JobTypeRemoved),
        (status = 404, description = "No such registered type", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The type has unfinished jobs (`job_type_in_use`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A built-in type (`field`: `name`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin"]))
)]
pub(crate) async fn delete(
    _caller: Scoped<Admin>,
    name: web::Path<String>,
    request: HttpRequest,
    registry: web::Data<TypeRegistry>,
) -> Result<HttpResponse, ApiError> {
    let force = match query_params(&request)?.get("force").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::InvalidQuery {
                field: "force".into(),
                message: format!("force is true or false, not `{other}`"),
            });
        }
    };
    Ok(HttpResponse::Ok().json(registry.remove(&name, force).await?))
}
