//! One error shape on the wire: `application/problem+json` (RFC 9457) with a stable `code`.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use conveyor_schemas::{FieldError, JobStatus};
use serde::Serialize;
use utoipa::ToSchema;

/// Seconds a client should wait before retrying when the broker could not take a job.
const RETRY_AFTER_SECS: u32 = 1;

/// `Retry-After` counts whole seconds; rounding down would invite a retry that is refused again.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// An RFC 9457 problem. `code` is stable and machine-readable; `field` names the offending input.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every offending field, when there is more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no bearer token was given")]
    MissingToken,
    #[error("the bearer token is not valid: {0}")]
    InvalidToken(String),
    #[error("this operation needs the `{0}` scope")]
    MissingScope(&'static str),
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{message}")]
    InvalidField { field: String, message: String },
    #[error("{message}")]
    InvalidQuery { field: String, message: String },
    #[error("there is no job type `{0}`; GET /v1/job-types lists them")]
    UnknownJobType(String),
    #[error("the payload does not match the schema of `{job_type}`")]
    InvalidPayload {
        job_type: String,
        errors: Vec<FieldError>,
    },
    #[error("the body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the body must be JSON, sent with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("there is no job with this id")]
    JobNotFound,
    #[error("there is no such route; /docs lists them")]
    RouteNotFound,
    #[error("this route does not take that method; it takes {0}")]
    MethodNotAllowed(&'static str),
    #[error("the job is already {} and cannot be cancelled", .0.as_str())]
    NotCancellable(JobStatus),
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    /// The cause is logged; the client learns the id its job would have.
    #[error(
        "the broker did not confirm the job in time: it may have been accepted, as job {job_id}. \
         Retry with the same Idempotency-Key to get that job rather than a second one"
    )]
    PublishUnconfirmed { job_id: uuid::Uuid, cause: String },
    #[error("the `{policy}` rate limit of this tenant is used up; retry in {} s", retry_after_secs(*.retry_after))]
    RateLimited {
        policy: &'static str,
        retry_after: Duration,
    },
    #[error(
        "this tenant has {max} unfinished jobs, its most at once; retry when some have finished"
    )]
    InFlightQuotaExceeded { max: u32 },
    #[error("this tenant has {max} event streams open on this server, its most at once")]
    TooManyStreams { max: usize },
    #[error("this tenant has {max} long-polls waiting on this server, its most at once")]
    TooManyLongPolls { max: usize },
    #[error("this tenant may not submit jobs of type `{0}`")]
    JobTypeNotAllowed(String),
    #[error("there is no registered job type `{0}`")]
    JobTypeNotFound(String),
    #[error(
        "job type `{0}` has unfinished jobs; wait for them, or remove it with ?force=true to fail them"
    )]
    JobTypeInUse(String),
    #[error(
        "this lease on the job is lost or old (it expired, or another worker holds the job now); nothing was changed"
    )]
    LeaseLost,
    #[error("{message}")]
    JsonTooComplex { field: String, message: String },
    #[error("the request headers are larger than the limit of {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("the request was not received in time ({0} s); send it whole, and faster")]
    RequestTimeout(u64),
    /// The cause is logged, never shown: it may name hosts, users and schemas.
    #[error("the job could not be handed to the broker; nothing was accepted, retry later")]
    BrokerUnavailable(String),
    #[error("the job store cannot answer now; retry later")]
    StoreUnavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The table: each error's HTTP status, stable code and title.
    fn describe(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            MissingToken => (
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "Authentication required",
            ),
            InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token", "Invalid token"),
            MissingScope(_) => (
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "Insufficient scope",
            ),
            MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json", "Malformed JSON"),
            InvalidField { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "Invalid field",
            ),
            InvalidQuery { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "Invalid query parameter",
            ),
            UnknownJobType(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_job_type",
                "Unknown job type",
            ),
            InvalidPayload { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_payload",
                "Invalid payload",
            ),
            PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Request body too large",
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            JobNotFound => (StatusCode::NOT_FOUND, "job_not_found", "Job not found"),
            RouteNotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            NotCancellable(_) => (
                StatusCode::CONFLICT,
                "job_not_cancellable",
                "Job not cancellable",
            ),
            IdempotencyKeyReused => (
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                "Idempotency key reused",
            ),
            PublishUnconfirmed { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "publish_unconfirmed",
                "Publish unconfirmed",
            ),
            RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Rate limit exceeded",
            ),
            InFlightQuotaExceeded { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "in_flight_quota_exceeded",
                "Too many unfinished jobs",
            ),
            TooManyStreams { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                "Too many event streams",
            ),
            TooManyLongPolls { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_long_polls",
                "Too many long-polls",
            ),
            JobTypeNotAllowed(_) => (
                StatusCode::FORBIDDEN,
                "job_type_not_allowed",
                "Job type not allowed",
            ),
            JobTypeNotFound(_) => (
                StatusCode::NOT_FOUND,
                "job_type_not_found",
                "Job type not found",
            ),
            JobTypeInUse(_) => (
                StatusCode::CONFLICT,
                "job_type_in_use",
                "Job type has unfinished jobs",
            ),
            LeaseLost => (StatusCode::CONFLICT, "lease_lost", "Lease lost"),
            JsonTooComplex { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "json_too_complex",
                "JSON over the limits",
            ),
            HeadersTooLarge { .. } => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "Request headers too large",
            ),
            RequestTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "Request timeout",
            ),
            BrokerUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "broker_unavailable",
                "Broker unavailable",
            ),
            StoreUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "Store unavailable",
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }

    fn field(&self) -> Option<String> {
        match self {
            ApiError::InvalidField { field, .. }
            | ApiError::InvalidQuery { field, .. }
            | ApiError::JsonTooComplex { field, .. } => Some(field.clone()),
            ApiError::UnknownJobType(_) | ApiError::JobTypeNotAllowed(_) => Some("type".into()),
            ApiError::InvalidPayload { errors, .. } => errors.first().map(|e| e.field.clone()),
            _ => None,
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.describe();
        let detail = match self {
            ApiError::InvalidPayload { errors, .. } => {
                let reasons: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect();
                format!("{self}: {}", reasons.join("; "))
            }
            _ => self.to_string(),
        };
        Problem {
            problem_type: format!("https://conveyor.dev/problems/{code}"),
            title: title.into(),
            status: status.as_u16(),
            detail,
            code,
            field: self.field(),
            errors: match self {
                ApiError::InvalidPayload { errors, .. } => errors.clone(),
                _ => Vec::new(),
            },
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(FieldError { field, message }: FieldError) -> Self {
        ApiError::InvalidField { field, message }
    }
}

impl From<conveyor_store::StoreError> for ApiError {
    fn from(error: conveyor_store::StoreError) -> Self {
        use conveyor_store::StoreError::*;
        match error {
            // Outages (of the database, or of the cache where nothing stands in for it) pass.
            Database(_) | Cache(_) => ApiError::StoreUnavailable(error.to_string()),
            Refused(_) | SchemaBehind(_) | Contended(_) | Config(_) => {
                ApiError::Internal(error.to_string())
            }
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.describe().0
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "Request failed with an internal error.");
            }
            ApiError::BrokerUnavailable(cause)
            | ApiError::StoreUnavailable(cause)
            | ApiError::PublishUnconfirmed { cause, .. } => {
                tracing::warn!(%cause, "Request failed: a dependency is unavailable.");
            }
            _ => {}
        }
        let problem = self.problem();
        let mut response = HttpResponse::build(self.status_code());
        response.content_type("application/problem+json");
        match self {
            ApiError::MissingToken => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"conveyor\""));
            }
            ApiError::InvalidToken(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    "Bearer realm=\"conveyor\", error=\"invalid_token\"",
                ));
            }
            ApiError::MissingScope(scope) => {
                let challenge = format!(
                    "Bearer realm=\"conveyor\", error=\"insufficient_scope\", scope=\"{scope}\""
                );
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response.insert_header((header::WWW_AUTHENTICATE, value));
                }
            }
            ApiError::BrokerUnavailable(_)
            | ApiError::StoreUnavailable(_)
            | ApiError::PublishUnconfirmed { .. }
            | ApiError::InFlightQuotaExceeded { .. }
            | ApiError::TooManyStreams { .. }
            | ApiError::TooManyLongPolls { .. } => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
            }
            ApiError::MethodNotAllowed(allow) => {
                response.insert_header((header::ALLOW, *allow));
            }
            ApiError::RateLimited { retry_after, .. } => {
                response.insert_header((
                    header::RETRY_AFTER,
                    retry_after_secs(*retry_after).to_string(),
                ));
            }
            _ => {}
        }
        response.json(problem)
    }
}
