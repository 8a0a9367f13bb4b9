//! What the routes ask for, done through the broker (to accept work) and the ledger (to read and
//! change jobs). No HTTP here.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor_events::{BrokerError, Command, Lane, Outgoing, Queues};
use conveyor_schemas::lifecycle::{self, Event, Kept};
use conveyor_schemas::{
    Job, JobStatus, JobTypeCatalog, JobTypeInfo, MAX_ATTEMPTS_LIMIT, PayloadRejected,
    TIMEOUT_MS_LIMIT,
};
use conveyor_store::{Change, IdempotencyClaim, JobPage, JobQuery, JobWatch, Ledger, LiveCatalog};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::metrics;
use crate::problem::ApiError;
use crate::tenants::TenantLimits;

/// How long a request that reuses an idempotency key waits for the first request's job.
const IDEMPOTENT_WAIT: Duration = Duration::from_secs(5);
/// How far ahead `run_at` may be: a job held for longer is more likely a mistake (a time in
/// milliseconds read as seconds) than a plan, and it would hold its payload and its quota place
/// all that while.
const RUN_AT_HORIZON_DAYS: i64 = 365;
/// How many of a tenant's oldest counted jobs are checked when its quota is reached.
const RECHECKED_IN_FLIGHT: usize = 32;
/// A counted job that neither the cache nor the store knows this long after its id was made was
/// never accepted (the recorder stores accepted jobs within seconds).
const NEVER_ACCEPTED_AFTER: Duration = Duration::from_secs(10 * 60);

/// The body of `POST /v1/jobs`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// A job type from `GET /v1/job-types`.
    #[serde(rename = "type")]
    pub job_type: String,
    /// Must satisfy the type's payload schema. Defaults to `{}`.
    #[serde(default = "empty_object")]
    pub payload: Value,
    /// Attempts before the job fails for good (1 to 100); the type's default, else the
    /// deployment's.
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<u32>,
    /// Not before this time (RFC 3339), at most 365 days ahead; the job waits as `scheduled`.
    pub run_at: Option<DateTime<Utc>>,
    /// Time limit of each attempt, in milliseconds (1 to 86,400,000); the type's default, else
    /// the worker's.
    #[schema(minimum = 1, maximum = 86400000)]
    pub timeout_ms: Option<u64>,
}

/// Whether the UUIDv7 `id` was made more than `age` ago.
fn made_before(id: Uuid, age: Duration) -> bool {
    let Some((seconds, nanos)) = id.get_timestamp().map(|at| at.to_unix()) else {
        return false;
    };
    let made = std::time::UNIX_EPOCH + Duration::new(seconds, nanos);
    made.elapsed().is_ok_and(|elapsed| elapsed > age)
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

#[derive(Clone)]
pub struct JobServiceSettings {
    pub default_max_attempts: u32,
    /// A tenant's new jobs beyond this many unfinished take the backlog lane; `None`: never.
    pub backlog_after: Option<u32>,
}

/// The ETags in an `If-None-Match`: a list, or `*` for any.
#[derive(Debug, Default)]
pub struct KnownEtags(Vec<String>);

impl KnownEtags {
    /// Parses the header value; weak and strong ETags compare alike here.
    pub fn parse(header: Option<&str>) -> KnownEtags {
        let etags = header
            .into_iter()
            .flat_map(|value| value.split(','))
            .map(|etag| etag.trim().trim_start_matches("W/").to_owned())
            .filter(|etag| !etag.is_empty())
            .collect();
        KnownEtags(etags)
    }

    pub fn matches(&self, job: &Job) -> bool {
        let etag = job.etag();
        self.0.iter().any(|known| known == "*" || *known == etag)
    }
}

pub enum Submitted {
    /// Accepted now: `202`.
    Created(Job),
    /// Accepted earlier under the same idempotency key: `200`.
    Existing(Job),
}

enum Claimed {
    /// Another request holds the key; this is its job.
    Existing(Box<Job>),
    /// Another request holds the key for the job with this id, which is nowhere to be seen: that
    /// request ended without knowing whether the broker took the job (or is slower than any
    /// wait). This one publishes the job again under the same id; whichever copy a worker meets
    /// first runs it, once.
    Unconfirmed(Uuid),
    /// The key is ours until the job is accepted (or the claim is dropped).
    Mine(Reservation),
}

/// Something taken for a job being accepted (its idempotency key, its place among the tenant's
/// unfinished jobs). Given back when dropped unless kept, so that a request that fails or is
/// abandoned (an error, a client gone, a shutdown) never holds anything for a job that does not
/// exist.
struct Reservation {
    give_back: Option<BoxFuture<'static, ()>>,
}

impl Reservation {
    fn new(give_back: impl Future<Output = ()> + Send + 'static) -> Reservation {
        Reservation {
            give_back: Some(Box::pin(give_back)),
        }
    }

    /// The job was accepted: what was taken is its own now.
    fn keep(mut self) {
        self.give_back = None;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(give_back) = self.give_back.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(give_back);
        }
    }
}

pub enum Cancelled {
    /// It was waiting and is now `cancelled`: `200`.
    Now(Job),
    /// It is running; its handler has been told: `202`.
    Requested(Job),
}

#[derive(Clone)]
pub struct JobService {
    queues: Arc<Queues>,
    ledger: Ledger,
    catalog: Arc<LiveCatalog>,
    settings: JobServiceSettings,
}

impl JobService {
    pub fn new(
        queues: Arc<Queues>,
        ledger: Ledger,
        catalog: Arc<LiveCatalog>,
        settings: JobServiceSettings,
    ) -> JobService {
        JobService {
            queues,
            ledger,
            catalog,
            settings,
        }
    }

    /// The job types as this process knows them now.
    pub fn catalog(&self) -> Arc<JobTypeCatalog> {
        self.catalog.current()
    }

    /// Accepts a job: `Created` only once the broker holds its command durably.
    pub async fn submit(
        &self,
        caller: &Caller,
        limits: &TenantLimits,
        request: SubmitJob,
        idempotency_key: Option<String>,
    ) -> Result<Submitted, ApiError> {
        if let Some(allowed) = &limits.job_types
            && !allowed.contains(&request.job_type)
        {
            return Err(ApiError::JobTypeNotAllowed(request.job_type));
        }
        let catalog = self.catalog();
        let job_type = self.validate(&catalog, &request)?;
        let mut job = self.new_job(caller, job_type, request, idempotency_key);
        let mut claim = None;
        if let Some(key) = &job.idempotency_key {
            match self.claim_key(&job, key).await? {
                Claimed::Existing(existing) => return Ok(Submitted::Existing(*existing)),
                Claimed::Unconfirmed(id) => job.id = id,
                Claimed::Mine(mine) => claim = Some(mine),
            }
        }
        // Counted against the quota, and to choose the lane, even when the quota is unlimited.
        let backlog_after = self.settings.backlog_after;
        let counted = match (limits.max_in_flight, backlog_after) {
            (None, None) => None,
            (max, _) => Some(self.take_place(&job, max.unwrap_or(u32::MAX)).await?),
        };
        let (place, unfinished) = counted.unzip();
        let lane = Lane::of_new_job(unfinished.flatten(), backlog_after);
        let command = Command::RunJob { job: job.clone() };
        let message = Outgoing::now(job.id.to_string(), command.encode());
        match self
            .queues
            .publish(&job_type.queue, lane, vec![message])
            .await
        {
            Ok(()) => {}
            // The broker may hold the command: the key and the place stay the job's, so that a
            // retry with the key gets this job rather than a second one. A place held for a job
            // that never came to be is given back when the quota is next reached.
            Err(BrokerError::Unconfirmed(cause)) => {
                claim.into_iter().chain(place).for_each(Reservation::keep);
                return Err(ApiError::PublishUnconfirmed {
                    job_id: job.id,
                    cause,
                });
            }
            Err(error) => return Err(ApiError::BrokerUnavailable(error.to_string())),
        }
        claim.into_iter().chain(place).for_each(Reservation::keep);
        self.ledger.accepted(&job).await?;
        tracing::debug!(job_id = %job.id, tenant = %job.tenant, subject = %caller.subject, job_type = %job.job_type, "Job accepted.");
        metrics::SUBMITTED.with_label_values(&[&job.job_type]).inc();
        Ok(Submitted::Created(job))
    }

    /// Counts the job among its tenant's unfinished jobs, unless it has `max` already, and says
    /// how many are counted now (`None` when the cache cannot count). Before refusing, the oldest
    /// counted are checked: a job that finished while the cache was away (or whose release was
    /// lost) is still counted, and must not hold its place for good.
    async fn take_place(
        &self,
        job: &Job,
        max: u32,
    ) -> Result<(Reservation, Option<u32>), ApiError> {
        let cache = self.ledger.cache().clone();
        let admitted = async || match cache.admit_in_flight(&job.tenant, job.id, max).await {
            Ok(counted) => counted.map(Some),
            Err(error) => {
                // Counting across replicas needs the cache; without it, the rate limit still holds.
                tracing::warn!(%error, tenant = %job.tenant, "Cannot count unfinished jobs; accepting without the quota.");
                Some(None)
            }
        };
        let unfinished = match admitted().await {
            Some(unfinished) => unfinished,
            None => {
                self.forget_finished(&job.tenant).await?;
                admitted().await.ok_or_else(|| {
                    metrics::QUOTA_REFUSED
                        .with_label_values(&["in_flight"])
                        .inc();
                    ApiError::InFlightQuotaExceeded { max }
                })?
            }
        };
        let (tenant, id) = (job.tenant.clone(), job.id);
        let place = Reservation::new(async move {
            if let Err(error) = cache.release_in_flight(&tenant, id).await {
                tracing::warn!(%tenant, %error, "Could not give back a place among unfinished jobs; it is checked again when the quota is reached.");
            }
        });
        Ok((place, unfinished))
    }

    /// Stops counting those of the tenant's oldest counted jobs that are finished, or that were
    /// never accepted (found nowhere, long after their id was made).
    async fn forget_finished(&self, tenant: &str) -> Result<(), ApiError> {
        let cache = self.ledger.cache();
        let oldest = cache
            .oldest_in_flight(tenant, RECHECKED_IN_FLIGHT)
            .await
            .unwrap_or_default();
        for id in oldest {
            let finished = match self.ledger.get(id).await? {
                Some(job) => job.status.is_terminal(),
                None => made_before(id, NEVER_ACCEPTED_AFTER),
            };
            if finished {
                cache.release_in_flight(tenant, id).await?;
            }
        }
        Ok(())
    }

    /// The request's job type, once the request is one that can be accepted.
    fn validate<'a>(
        &self,
        catalog: &'a JobTypeCatalog,
        request: &SubmitJob,
    ) -> Result<&'a JobTypeInfo, ApiError> {
        if let Some(max_attempts) = request.max_attempts
            && !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts)
        {
            return Err(ApiError::InvalidField {
                field: "max_attempts".into(),
                message: format!("max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
            });
        }
        if let Some(timeout_ms) = request.timeout_ms
            && !(1..=TIMEOUT_MS_LIMIT).contains(&timeout_ms)
        {
            return Err(ApiError::InvalidField {
                field: "timeout_ms".into(),
                message: format!("timeout_ms must be between 1 and {TIMEOUT_MS_LIMIT}"),
            });
        }
        if let Some(run_at) = request.run_at
            && run_at > Utc::now() + chrono::Duration::days(RUN_AT_HORIZON_DAYS)
        {
            return Err(ApiError::InvalidField {
                field: "run_at".into(),
                message: format!(
                    "run_at may be at most {RUN_AT_HORIZON_DAYS} days ahead, not {run_at}"
                ),
            });
        }
        catalog
            .validate(&request.job_type, &request.payload)
            .map_err(|rejected| match rejected {
                PayloadRejected::UnknownType(name) => ApiError::UnknownJobType(name),
                PayloadRejected::Invalid { job_type, errors } => {
                    ApiError::InvalidPayload { job_type, errors }
                }
            })
    }

    fn new_job(
        &self,
        caller: &Caller,
        job_type: &JobTypeInfo,
        request: SubmitJob,
        idempotency_key: Option<String>,
    ) -> Job {
        let now = Utc::now();
        Job {
            id: Uuid::now_v7(),
            job_type: request.job_type,
            status: lifecycle::accepted_status(request.run_at, now),
            payload: request.payload,
            result: None,
            error: None,
            attempts: 0,
            max_attempts: request
                .max_attempts
                .or(job_type.max_attempts)
                .unwrap_or(self.settings.default_max_attempts),
            progress: None,
            created_at: now,
            updated_at: now,
            run_at: request.run_at,
            started_at: None,
            finished_at: None,
            timeout_ms: request.timeout_ms.or(job_type.timeout_ms),
            version: 1,
            tenant: caller.tenant.clone(),
            cancel_requested: false,
            idempotency_key,
        }
    }

    /// Claims the job's idempotency key, or finds the job that holds it already.
    async fn claim_key(&self, job: &Job, key: &str) -> Result<Claimed, ApiError> {
        let fingerprint = fingerprint(job);
        let claim = IdempotencyClaim {
            job_id: job.id,
            request_hash: fingerprint.clone(),
        };
        let cache = self.ledger.cache();
        let Some(holder) = cache.claim_idempotency_key(&job.tenant, key, claim).await? else {
            let (cache, tenant, claimed) = (cache.clone(), job.tenant.clone(), key.to_owned());
            let mine = Reservation::new(async move {
                if let Err(error) = cache.release_idempotency_key(&tenant, &claimed).await {
                    tracing::warn!(%tenant, %error, "Could not give back an idempotency key.");
                }
            });
            // Claimed here; but the cache may have forgotten a key that the store remembers.
            let Some(recorded) = self
                .ledger
                .store()
                .find_by_idempotency_key(&job.tenant, key)
                .await?
            else {
                return Ok(Claimed::Mine(mine));
            };
            // Workers move `run_at` along, so a recorded job is compared without it.
            if lasting_fingerprint(&recorded) != lasting_fingerprint(job) {
                return Err(ApiError::IdempotencyKeyReused);
            }
            return Ok(Claimed::Existing(Box::new(recorded)));
        };
        if holder.request_hash != fingerprint {
            return Err(ApiError::IdempotencyKeyReused);
        }
        // The first request puts its job in the cache once the broker has it: wait for that.
        let mut watch = self.ledger.watch(holder.job_id);
        if let Some(existing) = self.ledger.get(holder.job_id).await? {
            return Ok(Claimed::Existing(Box::new(existing)));
        }
        let appeared = self.ledger.next_change(&mut watch, 0);
        match tokio::time::timeout(IDEMPOTENT_WAIT, appeared).await {
            Ok(Ok(Some(existing))) => Ok(Claimed::Existing(Box::new(existing))),
            Ok(Err(error)) => Err(error.into()),
            Ok(Ok(None)) | Err(_) => Ok(Claimed::Unconfirmed(holder.job_id)),
        }
    }

    pub async fn get(&self, caller: &Caller, id: Uuid) -> Result<Job, ApiError> {
        self.ledger
            .get(id)
            .await?
            .filter(|job| job.tenant == caller.tenant)
            .ok_or(ApiError::JobNotFound)
    }

    /// The job once its ETag is not among `known` (the client's `If-None-Match`), or as it is
    /// after `wait`.
    pub async fn wait_for_change(
        &self,
        caller: &Caller,
        id: Uuid,
        known: &KnownEtags,
        wait: Duration,
    ) -> Result<Job, ApiError> {
        // Watched before reading, so that a change between the read and the wait is not missed.
        let mut watch = self.ledger.watch(id);
        let job = self.get(caller, id).await?;
        if wait.is_zero() || !known.matches(&job) {
            return Ok(job);
        }
        let changed = self.ledger.next_change(&mut watch, job.version);
        match tokio::time::timeout(wait, changed).await {
            Ok(Ok(Some(changed))) => Ok(changed),
            Ok(Err(error)) => Err(error.into()),
            Ok(Ok(None)) | Err(_) => Ok(job),
        }
    }

    pub async fn cancel(&self, caller: &Caller, id: Uuid) -> Result<Cancelled, ApiError> {
        let job = self.get(caller, id).await?;
        match self.ledger.apply(&job, &Event::Cancel).await? {
            Change::Applied(job) if job.status == JobStatus::Cancelled => {
                metrics::CANCELLED_WAITING
                    .with_label_values(&[&job.job_type])
                    .inc();
                Ok(Cancelled::Now(job))
            }
            Change::Applied(job) | Change::Declined(job, Kept::CancelRequested) => {
                Ok(Cancelled::Requested(job))
            }
            Change::Declined(job, _) => Err(ApiError::NotCancellable(job.status)),
        }
    }

    pub async fn list(&self, caller: &Caller, query: &JobQuery) -> Result<JobPage, ApiError> {
        Ok(self.ledger.store().list(&caller.tenant, query).await?)
    }

    /// A waiter on job `id`'s changes, for event streams: made before reading the job they follow.
    pub fn watch(&self, id: Uuid) -> JobWatch {
        self.ledger.watch(id)
    }

    /// The next snapshot of `job` newer than it, from `watch` (see [`Ledger::next_change`]).
    pub async fn next_change(
        &self,
        watch: &mut JobWatch,
        job: &Job,
    ) -> Result<Option<Job>, ApiError> {
        Ok(self.ledger.next_change(watch, job.version).await?)
    }
}

/// What makes two submissions "the same request" for an idempotency key.
fn fingerprint(job: &Job) -> String {
    digest(&serde_json::json!([lasting_fingerprint(job), job.run_at]))
}

/// The part of [`fingerprint`] that a job keeps for life, to compare with a recorded job.
fn lasting_fingerprint(job: &Job) -> String {
    digest(&serde_json::json!([
        job.job_type,
        job.payload,
        job.max_attempts,
        job.timeout_ms
    ]))
}

fn digest(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}
