use actix_web::{HttpResponse, web};
use conveyor_schemas::Job;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::{JobsWork, Scoped};
use crate::claims::{
    ClaimRequest, ClaimService, ClaimedJobs, CompleteRequest, FailRequest, HeartbeatAnswer,
    HeartbeatRequest,
};
use crate::input_limits::InputLimits;
use crate::problem::{ApiError, Problem};
use crate::routes::jobs::{body_as, job_id};

/// Claim jobs
///
/// Takes up to `max` due jobs of the `pull` types named, of every tenant, oldest first, each
/// under a lease: renew it with heartbeats, end it with `complete` or `fail`. A lease not renewed
/// in time is lost: the job goes back to be claimed again, its attempt counted. Waits up to
/// `wait_ms` when no job is ready, then answers `{"jobs": []}`.
#[utoipa::path(
    post, path = "/v1/jobs/claim", tag = "workers",
    request_body = ClaimRequest,
    responses(
        (status = 200, description = "The jobs claimed (none, when none was ready in time)", body = ClaimedJobs),
        (status = 422, description = "A type that is not `pull` (`field`: `types`), or a bound out of range; `field` names it", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The cache that holds leases cannot answer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["jobs:work"]))
)]
pub(crate) async fn claim(
    _caller: Scoped<JobsWork>,
    body: web::Json<Value>,
    claims: web::Data<ClaimService>,
    input: web::Data<InputLimits>,
) -> Result<HttpResponse, ApiError> {
    let request: ClaimRequest = body_as(body.into_inner(), &input)?;
    let jobs = claims.claim(request).await?;
    Ok(HttpResponse::Ok().json(ClaimedJobs { jobs }))
}

/// Renew a lease
///
/// Renews the lease for as long again as the claim asked for, and records `progress`. The answer
/// says whether the client asked to cancel the job.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/heartbeat", tag = "workers",
    params(("id" = Uuid, Path, description = "The job id")),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "Renewed", body = HeartbeatAnswer),
        (status = 409, description = "The lease is lost or old (`lease_lost`): stop working on the job", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A malformed lease or progress; `field` names it", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["jobs:work"]))
)]
pub(crate) async fn heartbeat(
    _caller: Scoped<JobsWork>,
    id: web::Path<String>,
    body: web::Json<Value>,
    claims: web::Data<ClaimService>,
    input: web::Data<InputLimits>,
) -> Result<HttpResponse, ApiError> {
    let (id, request): (_, HeartbeatRequest) = leased(&id, body, &input)?;
    Ok(HttpResponse::Ok().json(claims.heartbeat(id, request).await?))
}

/// Complete a job
///
/// Records the attempt's success with its `result`; the job is `succeeded`.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/complete", tag = "workers",
    params(("id" = Uuid, Path, description = "The job id")),
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "Recorded", body = Job),
        (status = 409, description = "The lease is lost or old (`lease_lost`); nothing was recorded", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A malformed lease; `field` names it", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["jobs:work"]))
)]
pub(crate) async fn complete(
    _caller: Scoped<JobsWork>,
    id: web::Path<String>,
    body: web::Json<Value>,
    claims: web::Data<ClaimService>,
    input: web::Data<InputLimits>,
) -> Result<HttpResponse, ApiError> {
    let (id, request): (_, CompleteRequest) = leased(&id, body, &input)?;
    Ok(HttpResponse::Ok().json(claims.complete(id, request).await?))
}

/// Fail a job's attempt
///
/// A retryable failure retries after `retry_after_ms` (else the type's backoff) while attempts
/// remain; otherwise, or with `"retryable": false`, the job is `failed` and dead-lettered. A job
/// whose cancel was asked for ends `cancelled`.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/fail", tag = "workers",
    params(("id" = Uuid, Path, description = "The job id")),
    request_body = FailRequest,
    responses(
        (status = 200, description = "Recorded", body = Job),
        (status = 409, description = "The lease is lost or old (`lease_lost`); nothing was recorded", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A malformed lease or an empty error; `field` names it", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["jobs:work"]))
)]
pub(crate) async fn fail(
    _caller: Scoped<JobsWork>,
    id: web::Path<String>,
    body: web::Json<Value>,
    claims: web::Data<ClaimService>,
    input: web::Data<InputLimits>,
) -> Result<HttpResponse, ApiError> {
    let (id, request): (_, FailRequest) = leased(&id, body, &input)?;
    Ok(HttpResponse::Ok().json(claims.fail(id, request).await?))
}

/// The job id and the body of a call about a leased job.
fn leased<T: DeserializeOwned>(
    id: &str,
    body: web::Json<Value>,
    input: &InputLimits,
) -> Result<(Uuid, T), ApiError> {
    Ok((job_id(id)?, body_as(body.into_inner(), input)?))
}
