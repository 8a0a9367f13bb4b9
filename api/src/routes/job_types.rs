use actix_web::{HttpResponse, web};
use conveyor_schemas::JobTypeInfo;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{JobsRead, Scoped};
use crate::problem::ApiError;
use crate::service::JobService;

#[derive(Serialize, ToSchema)]
pub struct JobTypeList {
    pub items: Vec<JobTypeInfo>,
}

/// List job types
///
/// Each type's name, description and the JSON Schema its payloads must satisfy.
#[utoipa::path(
    get, path = "/v1/job-types", tag = "jobs",
    responses(
        (status = 200, description = "The job types", body = JobTypeList),
    ),
    security(("bearer" = ["jobs:read"]))
)]
pub(crate) async fn list(
    _caller: Scoped<JobsRead>,
    service: web::Data<JobService>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(JobTypeList {
        items: service.catalog().types().cloned().collect(),
    }))
}
