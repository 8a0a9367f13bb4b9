use std::sync::Arc;

use actix_web::{HttpResponse, web};
use conveyor_schemas::JobTypeInfo;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{JobsRead, Scoped};
use crate::problem::ApiError;
use crate::service::JobService;
use crate::tenants::TenantLimits;

#[derive(Serialize, ToSchema)]
pub struct JobTypeList {
    pub items: Vec<JobTypeInfo>,
}

/// List job types
///
/// Each type's name, description and the JSON Schema its payloads must satisfy: the types the
/// caller's tenant may submit.
#[utoipa::path(
    get, path = "/v1/job-types", tag = "jobs",
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
