use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpRequest, HttpResponse, web};
use conveyor_schemas::{Job, JobStatus};
use conveyor_store::JobQuery;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ApiSettings;
use crate::auth::{EventsRead, JobsRead, JobsWrite, Scoped};
use crate::hang_up;
use crate::input_limits::{InputLimits, check_json};
use crate::metrics;
use crate::problem::{ApiError, Problem};
use crate::service::{Cancelled, JobService, KnownEtags, SubmitJob, Submitted};
use crate::sse::{self, JobEvent};
use crate::tenants::TenantLimits;
use crate::waits::{OpenWaits, Wait};

const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
const DEFAULT_PAGE: u64 = 20;
const MAX_PAGE: u64 = 100;
/// nginx's code for a request whose client went before the answer.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// A page of jobs, newest first.
#[derive(Serialize, ToSchema)]
pub struct JobList {
    pub items: Vec<Job>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// Submit a job
///
/// Validates the job against its type's payload schema, hands it to the broker and answers `202`
/// once the broker holds it durably. With an `Idempotency-Key`, a repeat of the same request
/// returns the first job (`200`); the same key with a different request is a `409`.
#[utoipa::path(
    post, path = "/v1/jobs", tag = "jobs",
    request_body = SubmitJob,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries of this request safe: up to 255 visible ASCII characters, remembered per tenant.")),
    responses(
        (status = 202, description = "Accepted; the job is durable and visible", body = Job,
            headers(("Location" = String, description = "/v1/jobs/{id}"), ("ETag" = String))),
        (status = 200, description = "Accepted earlier under the same Idempotency-Key", body = Job,
            headers(("Location" = String, description = "/v1/jobs/{id}"), ("ETag" = String))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency-Key reused with a different request (`idempotency_key_reused`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the size limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown type, invalid field or payload, or JSON over the shape limits (`json_too_complex`); `field` names it", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The broker could not take the job, nothing was accepted (`broker_unavailable`); or it did not confirm in time and may hold the job, whose id the detail gives (`publish_unconfirmed`): a retry with the same Idempotency-Key gets that job, never a second one", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32))),
    ),
    security(("bearer" = ["jobs:write"]))
)]
pub(crate) async fn submit(
    Scoped(caller, _): Scoped<JobsWrite>,
    limits: web::ReqData<Arc<TenantLimits>>,
    request: HttpRequest,
    body: web::Json<Value>,
    service: web::Data<JobService>,
    input: web::Data<InputLimits>,
) -> Result<HttpResponse, ApiError> {
    let submission: SubmitJob = body_as(body.into_inner(), &input)?;
    let key = idempotency_key(request.headers())?;
    let (mut response, job) = match service.submit(&caller, &limits, submission, key).await? {
        Submitted::Created(job) => (HttpResponse::Accepted(), job),
        Submitted::Existing(job) => (HttpResponse::Ok(), job),
    };
    Ok(response
        .insert_header((header::LOCATION, format!("/v1/jobs/{}", job.id)))
        .insert_header((header::ETAG, job.etag()))
        .json(job))
}

/// Get a job
///
/// Answers with an `ETag`; send it back in `If-None-Match` to get `304` while nothing changed.
/// With `?wait=N` the request long-polls: it answers as soon as the job's ETag differs from
/// `If-None-Match`, or after N seconds (capped by the server).
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs",
    params(
        ("id" = Uuid, Path, description = "The job id"),
        ("wait" = Option<u64>, Query, description = "Long-poll up to this many seconds for a change from If-None-Match"),
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer"),
    ),
    responses(
        (status = 200, description = "The job", body = Job,
            headers(("ETag" = String), ("Cache-Control" = String, description = "no-cache while the job can change; long max-age once terminal"))),
        (status = 304, description = "Unchanged since If-None-Match"),
        (status = 400, description = "Bad `wait`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's read rate limit is used up (`rate_limited`), or it has as many long-polls waiting on this server as it may (`too_many_long_polls`)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32))),
    ),
    security(("bearer" = ["jobs:read"]))
)]
pub(crate) async fn get(
    Scoped(caller, _): Scoped<JobsRead>,
    id: web::Path<String>,
    request: HttpRequest,
    service: web::Data<JobService>,
    waits: web::Data<OpenWaits>,
    settings: web::Data<ApiSettings>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&id)?;
    let query = query_params(&request)?;
    let wait = match query.get("wait") {
        None => Duration::ZERO,
        Some(value) => {
            // Within the document's int64, so that what it calls invalid is refused.
            let seconds = value
                .parse::<i64>()
                .ok()
                .and_then(|seconds| u64::try_from(seconds).ok())
                .ok_or_else(|| ApiError::InvalidQuery {
                    field: "wait".into(),
                    message: format!("wait must be a whole number of seconds, not `{value}`"),
                })?;
            Duration::from_secs(seconds).min(settings.max_wait)
        }
    };
    let known = KnownEtags::parse(
        request
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|value| value.to_str().ok()),
    );
    let waited = service.wait_for_change(&caller, id, &known, wait);
    let job = if wait.is_zero() {
        waited.await?
    } else {
        let max = settings.max_long_polls_per_tenant;
        let Some(_place) = waits.open(Wait::LongPoll, &caller.tenant, max) else {
            metrics::QUOTA_REFUSED
                .with_label_values(&["long_polls"])
                .inc();
            return Err(ApiError::TooManyLongPolls { max });
        };
        match hang_up::unless_hung_up(&request, waited).await {
            Some(job) => job?,
            // Nobody reads this; its status tells the request metrics what happened.
            None => {
                let status = StatusCode::from_u16(CLIENT_CLOSED_REQUEST).expect("a status code");
                return Ok(HttpResponse::new(status));
            }
        }
    };
    let cache_control = if job.status.is_terminal() {
        "private, max-age=86400, immutable"
    } else {
        "private, no-cache"
    };
    let etag = job.etag();
    if known.matches(&job) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .insert_header((header::CACHE_CONTROL, cache_control))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, cache_control))
        .json(job))
}

/// Cancel a job
///
/// A `scheduled`, `queued` or `retrying` job is cancelled at once (`200`). A `running` job has
/// its cancellation requested and its handler told (`202`); it ends `cancelled` when the handler
/// stops. A finished job cannot be cancelled (`409`).
#[utoipa::path(
    delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job id")),
    responses(
        (status = 200, description = "Cancelled", body = Job),
        (status = 202, description = "Running: cancellation requested", body = Job),
        (status = 404, description = "No such job for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already finished", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["jobs:write"]))
)]
pub(crate) async fn cancel(
    Scoped(caller, _): Scoped<JobsWrite>,
    id: web::Path<String>,
    service: web::Data<JobService>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&id)?;
    Ok(match service.cancel(&caller, id).await? {
        Cancelled::Now(job) => HttpResponse::Ok().json(job),
        Cancelled::Requested(job) => HttpResponse::Accepted().json(job),
    })
}

/// List jobs
///
/// The caller's tenant's jobs, newest first, optionally of one type or status. Pages are stable:
/// pass `next_cursor` as `cursor` for the next one.
#[utoipa::path(
    get, path = "/v1/jobs", tag = "jobs",
    params(
        ("type" = Option<String>, Query, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$", description = "Only jobs of this type (no control characters)"),
        ("status" = Option<JobStatus>, Query, description = "Only jobs in this status"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100 (default 20)"),
        ("cursor" = Option<Uuid>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 400, description = "Bad query parameter; `field` names it", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["jobs:read"]))
)]
pub(crate) async fn list(
    Scoped(caller, _): Scoped<JobsRead>,
    request: HttpRequest,
    service: web::Data<JobService>,
) -> Result<HttpResponse, ApiError> {
    let query = query_params(&request)?;
    let invalid = |field: &str, message: String| ApiError::InvalidQuery {
        field: field.into(),
        message,
    };
    let status = match query.get("status") {
        None => None,
        Some(value) => Some(JobStatus::parse(value).ok_or_else(|| {
            invalid("status", format!("status `{value}` is not one of scheduled, queued, running, retrying, succeeded, failed, cancelled"))
        })?),
    };
    let limit = match query.get("limit") {
        None => DEFAULT_PAGE,
        Some(value) => value
            .parse::<u64>()
            .ok()
            .filter(|limit| (1..=MAX_PAGE).contains(limit))
            .ok_or_else(|| {
                invalid(
                    "limit",
                    format!("limit must be between 1 and {MAX_PAGE}, not `{value}`"),
                )
            })?,
    };
    let before = match query.get("cursor") {
        None => None,
        Some(value) => Some(Uuid::parse_str(value).map_err(|_| {
            invalid(
                "cursor",
                format!("cursor `{value}` is not one this API gave out"),
            )
        })?),
    };
    let page = service
        .list(
            &caller,
            &JobQuery {
                job_type: query.get("type").cloned(),
                status,
                before,
                limit,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(JobList {
        items: page.items,
        next_cursor: page.next_cursor.map(|id| id.to_string()),
    }))
}

/// Stream a job's changes
///
/// Server-sent events: the job as it is now, then one event per change (`id` = the job's
/// version, `data` = the job), ending after a terminal state. Comments keep the connection alive.
#[utoipa::path(
    get, path = "/v1/jobs/{id}/events", tag = "jobs",
    params(("id" = Uuid, Path, description = "The job id")),
    responses(
        (status = 200, description = "An event stream of job snapshots", content_type = "text/event-stream", body = JobEvent),
        (status = 404, description = "No such job for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's read rate limit is used up (`rate_limited`), or it has as many streams open on this server as it may (`too_many_streams`)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u32))),
    ),
    security(("bearer" = ["events:read"]))
)]
pub(crate) async fn events(
    Scoped(caller, _): Scoped<EventsRead>,
    id: web::Path<String>,
    service: web::Data<JobService>,
    waits: web::Data<OpenWaits>,
    settings: web::Data<ApiSettings>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&id)?;
    let max = settings.max_streams_per_tenant;
    let Some(place) = waits.open(Wait::Stream, &caller.tenant, max) else {
        metrics::QUOTA_REFUSED.with_label_values(&["streams"]).inc();
        return Err(ApiError::TooManyStreams { max });
    };
    let watch = service.watch(id);
    let job = service.get(&caller, id).await?;
    let stream = sse::job_events(job, watch, service.into_inner(), place);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

/// A JSON body as the request type `T`, within the input limits; an error names the field.
pub(super) fn body_as<T: DeserializeOwned>(
    body: Value,
    input: &InputLimits,
) -> Result<T, ApiError> {
    // serde also reads a struct from an array, field by field in order: without this,
    // `["echo", {}, null, null, null]` was accepted as a job.
    if !body.is_object() {
        return Err(ApiError::InvalidField {
            field: "body".into(),
            message: "the body must be a JSON object".into(),
        });
    }
    check_json(&body, input)?;
    serde_path_to_error::deserialize(body).map_err(|error| ApiError::InvalidField {
        field: field_of(&error),
        message: error.inner().to_string(),
    })
}

/// An id that is not a UUID names no job.
pub(super) fn job_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::JobNotFound)
}

/// The query's parameters; one holding a control character (a NUL, which no store can hold, and
/// the like) is refused naming it.
pub(super) fn query_params(request: &HttpRequest) -> Result<HashMap<String, String>, ApiError> {
    let params = web::Query::<HashMap<String, String>>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .map_err(|error| ApiError::InvalidQuery {
            field: "query".into(),
            message: error.to_string(),
        })?;
    match params
        .iter()
        .find(|(name, value)| name.chars().chain(value.chars()).any(char::is_control))
    {
        Some((name, _)) => Err(ApiError::InvalidQuery {
            field: name.chars().filter(|c| !c.is_control()).collect(),
            message: "query parameters may not hold control characters".into(),
        }),
        None => Ok(params),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("Idempotency-Key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN)
        .map(|key| Some(key.to_owned()))
        .ok_or_else(|| ApiError::InvalidField {
            field: "Idempotency-Key".into(),
            message: format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ),
        })
}

/// The field a body error is about: serde's path, or the field named in its message.
fn field_of(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = error.path().to_string();
    if path != "." {
        return path;
    }
    let message = error.inner().to_string();
    message
        .split('`')
        .nth(1)
        .map(str::to_owned)
        .unwrap_or_else(|| "body".into())
}
