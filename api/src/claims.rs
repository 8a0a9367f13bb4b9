//! Jobs of `pull` types, run by workers of any language over HTTP (scope `jobs:work`): claimed
//! under a lease, renewed by heartbeats, ended by `complete` or `fail`. No HTTP here.
//!
//! A lease is the cache's lease on the job (the same one Conveyor's own workers take) and the
//! attempt it was given for: an outcome is recorded only by the holder of the current attempt's
//! lease, so a worker that lost its job (the lease ran out and another worker claimed it, or the
//! rescuer put it back) changes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor_events::{Queues, dead_letter};
use conveyor_schemas::lifecycle::{self, Event, Kept, Outcome};
use conveyor_schemas::{Backoff, Job, JobMode, JobStatus, JobTypeCatalog};
use conveyor_store::{
    Cache, Change, Ledger, LiveCatalog, give_back_running_place, take_running_place,
};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::problem::ApiError;

/// Jobs one claim may take, at most.
pub const MAX_CLAIM: u32 = 100;
/// The longest a claim waits for jobs.
pub const MAX_CLAIM_WAIT_MS: u64 = 30_000;
const DEFAULT_LEASE_MS: u64 = 30_000;
const MIN_LEASE_MS: u64 = 1_000;
const MAX_LEASE_MS: u64 = 3_600_000;
/// Types one claim may name.
const MAX_CLAIM_TYPES: usize = 32;
/// How often a waiting claim looks in the store again: retries and scheduled jobs become due
/// with time, which no change announces.
const RESCAN: Duration = Duration::from_secs(1);
/// Tenants whose queued jobs one claim looks at, per type.
const TENANT_TURNS: usize = 8;
/// The longest wait a failed job may ask for before its next attempt (a day).
const MAX_RETRY_AFTER_MS: u64 = 24 * 60 * 60 * 1000;

/// The body of `POST /v1/jobs/claim`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The `pull` types whose jobs this worker runs.
    pub types: Vec<String>,
    /// Jobs to take at most (1 to 100, default 1).
    #[schema(minimum = 1, maximum = 100)]
    pub max: Option<u32>,
    /// How long to wait for a job when none is ready, in milliseconds (at most 30,000; default 0).
    #[schema(maximum = 30000)]
    pub wait_ms: Option<u64>,
    /// How long the lease lasts unless renewed by a heartbeat, in milliseconds (1,000 to
    /// 3,600,000; default 30,000).
    #[schema(minimum = 1000, maximum = 3600000)]
    pub lease_ms: Option<u64>,
}

/// The body of `POST /v1/jobs/{id}/heartbeat`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The lease token the claim gave.
    pub lease: String,
    /// Fraction done, 0 to 1.
    pub progress: Option<f64>,
}

/// The body of `POST /v1/jobs/{id}/complete`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub lease: String,
    /// The job's result, any JSON (default `null`).
    #[serde(default)]
    pub result: Value,
}

/// The body of `POST /v1/jobs/{id}/fail`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    pub lease: String,
    /// What went wrong, shown as the job's `error`.
    pub error: String,
    /// Whether another attempt may succeed (default `true`); `false` fails the job for good.
    #[serde(default = "retryable_by_default")]
    pub retryable: bool,
    /// Wait this long before the next attempt, in milliseconds (else the type's backoff).
    pub retry_after_ms: Option<u64>,
}

fn retryable_by_default() -> bool {
    true
}

/// A claimed job's lease.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Lease {
    /// Pass it to `heartbeat`, `complete` and `fail`.
    pub token: String,
    /// When the lease ends unless a heartbeat renews it.
    pub expires_at: DateTime<Utc>,
}

/// A job as `GET /v1/jobs/{id}` shows it, with the lease it was claimed under.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimedJob {
    #[serde(flatten)]
    pub job: Job,
    pub lease: Lease,
}

/// What `POST /v1/jobs/claim` answers: empty when no job was ready within `wait_ms`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimedJobs {
    pub jobs: Vec<ClaimedJob>,
}

/// What a heartbeat answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeartbeatAnswer {
    pub expires_at: DateTime<Utc>,
    /// The client asked to cancel the job: stop, and report with `fail`.
    pub cancel_requested: bool,
}

/// What a claim of one job came to.
enum Taken {
    Job(Box<ClaimedJob>),
    Nothing,
    /// Its type runs as many attempts as its `concurrency` allows.
    TypeFull,
}

/// A lease token: `<job id>.<attempt>.<lease ms>.<holder>`, so that any api replica can check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LeaseToken {
    job: Uuid,
    attempt: u32,
    lease_ms: u64,
    holder: Uuid,
}

impl LeaseToken {
    fn encode(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.job.simple(),
            self.attempt,
            self.lease_ms,
            self.holder.simple()
        )
    }

    fn parse(token: &str) -> Option<LeaseToken> {
        let mut parts = token.split('.');
        let token = LeaseToken {
            job: Uuid::try_parse(parts.next()?).ok()?,
            attempt: parts.next()?.parse().ok()?,
            lease_ms: parts.next()?.parse().ok()?,
            holder: Uuid::try_parse(parts.next()?).ok()?,
        };
        (parts.next().is_none() && (MIN_LEASE_MS..=MAX_LEASE_MS).contains(&token.lease_ms))
            .then_some(token)
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    fn lease(&self) -> Lease {
        Lease {
            token: self.encode(),
            expires_at: expires(self.lease_ms),
        }
    }
}

fn expires(lease_ms: u64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::milliseconds(lease_ms as i64)
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidField {
        field: field.into(),
        message: message.into(),
    }
}

/// A claim's limits, checked.
struct Claim {
    types: Vec<String>,
    max: usize,
    wait: Duration,
    lease_ms: u64,
}

impl Claim {
    fn check(request: ClaimRequest, catalog: &JobTypeCatalog) -> Result<Claim, ApiError> {
        if request.types.is_empty() || request.types.len() > MAX_CLAIM_TYPES {
            return Err(invalid(
                "types",
                format!("name 1 to {MAX_CLAIM_TYPES} pull job types"),
            ));
        }
        for name in &request.types {
            match catalog.get(name).map(|info| info.mode) {
                Some(JobMode::Pull) => {}
                Some(mode) => {
                    return Err(invalid(
                        "types",
                        format!(
                            "`{name}` is a {} type: only pull types can be claimed",
                            mode.as_str()
                        ),
                    ));
                }
                None => return Err(invalid("types", format!("there is no job type `{name}`"))),
            }
        }
        let max = request.max.unwrap_or(1);
        if !(1..=MAX_CLAIM).contains(&max) {
            return Err(invalid(
                "max",
                format!("max must be between 1 and {MAX_CLAIM}"),
            ));
        }
        let wait_ms = request.wait_ms.unwrap_or(0);
        if wait_ms > MAX_CLAIM_WAIT_MS {
            return Err(invalid(
                "wait_ms",
                format!("wait_ms may be at most {MAX_CLAIM_WAIT_MS}"),
            ));
        }
        let lease_ms = request.lease_ms.unwrap_or(DEFAULT_LEASE_MS);
        if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&lease_ms) {
            return Err(invalid(
                "lease_ms",
                format!("lease_ms must be between {MIN_LEASE_MS} and {MAX_LEASE_MS}"),
            ));
        }
        let mut types = request.types;
        types.sort();
        types.dedup();
        Ok(Claim {
            types,
            max: max as usize,
            wait: Duration::from_millis(wait_ms),
            lease_ms,
        })
    }

    /// Whether `job`, as a change announced it, may be claimed now.
    fn wants(&self, job: &Job, now: DateTime<Utc>) -> bool {
        job.status.is_waiting()
            && job.run_at.is_none_or(|at| at <= now)
            && self.types.binary_search(&job.job_type).is_ok()
    }
}

/// Each tenant's jobs in `offered` one at a time in turn, the first tenant first: the first job
/// of each, then the second of each, and so on.
fn in_turns<T>(offered: Vec<Vec<T>>) -> Vec<T> {
    let mut queues: Vec<std::vec::IntoIter<T>> = offered.into_iter().map(Vec::into_iter).collect();
    let mut turns = Vec::new();
    loop {
        let before = turns.len();
        turns.extend(queues.iter_mut().filter_map(Iterator::next));
        if turns.len() == before {
            return turns;
        }
    }
}

/// When the next attempt of a job whose attempt failed as `request` says may start; `None` for
/// a failure that is not worth retrying.
fn retry_at(
    request: &FailRequest,
    attempt: u32,
    backoff: Backoff,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if !request.retryable {
        return None;
    }
    let delay = match request.retry_after_ms {
        Some(ms) => Duration::from_millis(ms.min(MAX_RETRY_AFTER_MS)),
        None => backoff.delay(attempt),
    };
    Some(now + chrono::Duration::from_std(delay).unwrap_or_default())
}

pub struct ClaimService {
    ledger: Ledger,
    catalog: Arc<LiveCatalog>,
    queues: Arc<Queues>,
    /// Between attempts of a type that names no backoff of its own.
    backoff: Backoff,
    /// Per type, the tenant whose job this process's claims took last: the next claim starts
    /// with the tenant after it.
    turns: Mutex<HashMap<String, String>>,
}

impl ClaimService {
    pub fn new(
        ledger: Ledger,
        catalog: Arc<LiveCatalog>,
        queues: Arc<Queues>,
        backoff: Backoff,
    ) -> ClaimService {
        ClaimService {
            ledger,
            catalog,
            queues,
            backoff,
            turns: Mutex::default(),
        }
    }

    fn cache(&self) -> &Arc<dyn Cache> {
        self.ledger.cache()
    }

    /// Claims up to `max` due jobs of the types named, oldest first, waiting up to `wait_ms` for
    /// one when none is ready.
    pub async fn claim(&self, request: ClaimRequest) -> Result<Vec<ClaimedJob>, ApiError> {
        let claim = Claim::check(request, &self.catalog.current())?;
        // Subscribed before the store is read, so that a job accepted in between is heard of.
        let mut changes = self.ledger.subscribe();
        let deadline = tokio::time::Instant::now() + claim.wait;
        loop {
            let claimed = self.claim_from_store(&claim).await?;
            if !claimed.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(claimed);
            }
            let rescan = (tokio::time::Instant::now() + RESCAN).min(deadline);
            loop {
                let heard = tokio::select! {
                    heard = changes.recv() => heard,
                    _ = tokio::time::sleep_until(rescan) => break,
                };
                match heard {
                    Ok(job) if claim.wants(&job, Utc::now()) => {
                        if let Taken::Job(claimed) = self.claim_one(&job, claim.lease_ms).await? {
                            return Ok(vec![*claimed]);
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => {
                        tokio::time::sleep_until(rescan).await;
                        break;
                    }
                }
            }
        }
    }

    /// Claims what the store shows due: tenants take turns (from after the tenant served last,
    /// for each type), each offering its oldest queued jobs; then jobs held until now (scheduled,
    /// or retrying); then, while fewer than `max` were claimed, the longest running jobs whose
    /// lease ran out (the rescuer finds those too, but only a sweep or two after their lease
    /// ended).
    async fn claim_from_store(&self, claim: &Claim) -> Result<Vec<ClaimedJob>, ApiError> {
        let store = self.ledger.store();
        let now = Utc::now();
        let mut candidates = Vec::new();
        for job_type in &claim.types {
            let after = self.turns.lock().unwrap().get(job_type).cloned();
            let tenants = store
                .tenants_queued(job_type, after.as_deref().unwrap_or_default(), TENANT_TURNS)
                .await?;
            // Twice what is wanted, for the jobs that other claimers take first.
            let each = (2 * claim.max).div_ceil(tenants.len().max(1)) as u64;
            let mut offered = Vec::new();
            for tenant in &tenants {
                let mut oldest = store.queued_of_tenant(job_type, tenant, each).await?;
                oldest.shuffle(&mut rand::rng());
                offered.push(oldest);
            }
            candidates.extend(in_turns(offered));
        }
        let mut held = store
            .held_and_due(&claim.types, now, (2 * claim.max) as u64)
            .await?;
        held.shuffle(&mut rand::rng());
        candidates.extend(held);
        let mut claimed = Vec::new();
        self.claim_among(&candidates, claim, &mut claimed).await?;
        if claimed.len() < claim.max {
            let started_before = now - chrono::Duration::milliseconds(MIN_LEASE_MS as i64);
            let lost = store
                .running_of_types_before(&claim.types, started_before, claim.max as u64)
                .await?;
            self.claim_among(&lost, claim, &mut claimed).await?;
        }
        let mut turns = self.turns.lock().unwrap();
        for job in &claimed {
            turns.insert(job.job.job_type.clone(), job.job.tenant.clone());
        }
        Ok(claimed)
    }

    /// Claims `candidates` in turn until `claimed` holds `max`, passing over the types at their
    /// `concurrency` cap.
    async fn claim_among(
        &self,
        candidates: &[Job],
        claim: &Claim,
        claimed: &mut Vec<ClaimedJob>,
    ) -> Result<(), ApiError> {
        let mut full = HashSet::new();
        for candidate in candidates {
            if claimed.len() == claim.max {
                break;
            }
            if full.contains(&candidate.job_type) {
                continue;
            }
            match self.claim_one(candidate, claim.lease_ms).await? {
                Taken::Job(job) => claimed.push(*job),
                Taken::Nothing => {}
                Taken::TypeFull => {
                    full.insert(candidate.job_type.clone());
                }
            }
        }
        Ok(())
    }

    /// Takes `candidate`'s lease, a place among its type's running attempts when the type has
    /// a cap, and starts its next attempt; unless another worker holds it, it is not waiting any
    /// more, or its type is at its cap.
    async fn claim_one(&self, candidate: &Job, lease_ms: u64) -> Result<Taken, ApiError> {
        let holder = Uuid::now_v7();
        let ttl = Duration::from_millis(lease_ms);
        if !self.cache().hold_lease(candidate.id, holder, ttl).await? {
            return Ok(Taken::Nothing);
        }
        let cap = self.cap(&candidate.job_type);
        if let Some(cap) = cap
            && !self.admit(candidate, cap).await?
        {
            self.cache().release_lease(candidate.id, holder).await?;
            return Ok(Taken::TypeFull);
        }
        let started = match self.ledger.apply(candidate, &Event::Start).await {
            Ok(Change::Declined(running, Kept::Running)) => {
                // Running, yet its lease was free: the worker that claimed it lost it.
                self.rescue(&running).await
            }
            other => other.map_err(ApiError::from),
        };
        match started {
            Ok(Change::Applied(running)) if running.status == JobStatus::Running => {
                let token = LeaseToken {
                    job: running.id,
                    attempt: running.attempts,
                    lease_ms,
                    holder,
                };
                Ok(Taken::Job(Box::new(ClaimedJob {
                    job: running,
                    lease: token.lease(),
                })))
            }
            other => {
                // Given back before the lease: while it holds the lease, no other claim runs
                // the job, so the place is nobody else's.
                if cap.is_some() {
                    self.release_place(candidate).await?;
                }
                self.cache().release_lease(candidate.id, holder).await?;
                other.map(|_| Taken::Nothing)
            }
        }
    }

    fn cap(&self, job_type: &str) -> Option<u32> {
        self.catalog.current().get(job_type)?.concurrency
    }

    async fn admit(&self, job: &Job, cap: u32) -> Result<bool, ApiError> {
        Ok(take_running_place(&**self.cache(), job, cap).await?)
    }

    async fn release_place(&self, job: &Job) -> Result<(), ApiError> {
        Ok(give_back_running_place(&**self.cache(), &job.job_type, job.id).await?)
    }

    /// Ends the lost attempt of `running` and, when attempts remain, starts the next.
    async fn rescue(&self, running: &Job) -> Result<Change, ApiError> {
        let lost = Event::Rescue {
            attempt: running.attempts,
        };
        match self.ledger.apply(running, &lost).await? {
            Change::Applied(rescued) => {
                self.ended(&rescued).await?;
                if rescued.status.is_terminal() {
                    Ok(Change::Applied(rescued))
                } else {
                    Ok(self.ledger.apply(&rescued, &Event::Start).await?)
                }
            }
            declined => Ok(declined),
        }
    }

    /// What the end of an attempt calls for: it is counted, and a job that failed for good is
    /// dead-lettered.
    async fn ended(&self, job: &Job) -> Result<(), ApiError> {
        conveyor_store::metrics::attempt_finished(job);
        if job.status == JobStatus::Failed {
            dead_letter(&self.queues, job)
                .await
                .map_err(|error| ApiError::BrokerUnavailable(error.to_string()))?;
        }
        Ok(())
    }

    /// The job `id` as the holder of `lease` may change it: the lease is renewed (or taken
    /// again, if it ran out with nobody else claiming the job) and the job is still running
    /// that attempt. Anything else is a lost lease.
    async fn leased(&self, id: Uuid, lease: &str) -> Result<(LeaseToken, Job), ApiError> {
        let token = LeaseToken::parse(lease)
            .ok_or_else(|| invalid("lease", "not a lease token that a claim gave"))?;
        if token.job != id {
            return Err(ApiError::LeaseLost);
        }
        if !self
            .cache()
            .hold_lease(id, token.holder, token.ttl())
            .await?
        {
            return Err(ApiError::LeaseLost);
        }
        let job = self.ledger.get(id).await?;
        let current = match job {
            Some(job) if lifecycle::running_attempt(&job, token.attempt) => job,
            _ => {
                self.cache().release_lease(id, token.holder).await?;
                return Err(ApiError::LeaseLost);
            }
        };
        // A lease that ran out may have lost its place among its type's running attempts too;
        // it is taken again, or the lease is lost after all.
        if let Some(cap) = self.cap(&current.job_type)
            && !self.admit(&current, cap).await?
        {
            self.cache().release_lease(id, token.holder).await?;
            return Err(ApiError::LeaseLost);
        }
        Ok((token, current))
    }

    pub async fn heartbeat(
        &self,
        id: Uuid,
        request: HeartbeatRequest,
    ) -> Result<HeartbeatAnswer, ApiError> {
        if let Some(progress) = request.progress
            && !(0.0..=1.0).contains(&progress)
        {
            return Err(invalid("progress", "progress must be between 0 and 1"));
        }
        let (token, mut job) = self.leased(id, &request.lease).await?;
        if let Some(fraction) = request.progress {
            let progressed = Event::Progress {
                attempt: token.attempt,
                fraction,
            };
            match self.ledger.apply(&job, &progressed).await? {
                Change::Applied(changed) => job = changed,
                Change::Declined(..) => return Err(ApiError::LeaseLost),
            }
        }
        Ok(HeartbeatAnswer {
            expires_at: token.lease().expires_at,
            cancel_requested: job.cancel_requested,
        })
    }

    pub async fn complete(&self, id: Uuid, request: CompleteRequest) -> Result<Job, ApiError> {
        let (token, job) = self.leased(id, &request.lease).await?;
        self.finish(token, &job, Outcome::Succeeded(request.result))
            .await
    }

    pub async fn fail(&self, id: Uuid, request: FailRequest) -> Result<Job, ApiError> {
        if request.error.is_empty() {
            return Err(invalid("error", "say what went wrong"));
        }
        let (token, job) = self.leased(id, &request.lease).await?;
        let backoff = self
            .catalog
            .current()
            .get(&job.job_type)
            .and_then(|info| info.backoff)
            .map_or(self.backoff, |spec| spec.backoff());
        let outcome = Outcome::Failed {
            retry_at: retry_at(&request, token.attempt, backoff, Utc::now()),
            error: request.error,
        };
        self.finish(token, &job, outcome).await
    }

    async fn finish(
        &self,
        token: LeaseToken,
        job: &Job,
        outcome: Outcome,
    ) -> Result<Job, ApiError> {
        let finish = Event::Finish {
            attempt: token.attempt,
            outcome,
        };
        let change = self.ledger.apply(job, &finish).await;
        if matches!(change, Ok(Change::Applied(_))) && self.cap(&job.job_type).is_some() {
            self.release_place(job).await?;
        }
        self.cache().release_lease(job.id, token.holder).await?;
        match change? {
            Change::Applied(recorded) => {
                self.ended(&recorded).await?;
                Ok(recorded)
            }
            Change::Declined(..) => Err(ApiError::LeaseLost),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_take_turns_one_job_each() {
        let offered = vec![vec!["a1", "a2", "a3"], vec!["b1"], vec![], vec!["c1", "c2"]];
        assert_eq!(in_turns(offered), ["a1", "b1", "c1", "a2", "c2", "a3"]);
        assert!(in_turns::<u8>(vec![]).is_empty());
    }

    #[test]
    fn a_lease_token_round_trips_and_nothing_else_passes_for_one() {
        let token = LeaseToken {
            job: Uuid::now_v7(),
            attempt: 3,
            lease_ms: 30_000,
            holder: Uuid::now_v7(),
        };
        assert_eq!(LeaseToken::parse(&token.encode()), Some(token));
        for bad in ["", "x", "1.2.3", &format!("{}.extra", token.encode())] {
            assert_eq!(LeaseToken::parse(bad), None, "{bad}");
        }
        let too_long = LeaseToken {
            lease_ms: MAX_LEASE_MS + 1,
            ..token
        };
        assert_eq!(LeaseToken::parse(&too_long.encode()), None);
    }

    fn failure(retryable: bool, retry_after_ms: Option<u64>) -> FailRequest {
        FailRequest {
            lease: String::new(),
            error: "boom".into(),
            retryable,
            retry_after_ms,
        }
    }

    #[test]
    fn a_failure_retries_when_asked_after_the_time_asked_for_else_the_backoff() {
        let now = Utc::now();
        let backoff = Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(10),
        };
        assert_eq!(retry_at(&failure(false, Some(5)), 1, backoff, now), None);
        assert_eq!(
            retry_at(&failure(true, Some(2_000)), 1, backoff, now),
            Some(now + chrono::Duration::seconds(2))
        );
        let backed_off = retry_at(&failure(true, None), 1, backoff, now).unwrap();
        assert!(backed_off >= now + chrono::Duration::seconds(5));
        assert!(backed_off <= now + chrono::Duration::seconds(10));
    }

    #[test]
    fn a_claim_takes_pull_types_only_and_checks_its_bounds() {
        use conveyor_schemas::JobTypeInfo;
        let resize = JobTypeInfo {
            name: "resize".into(),
            mode: JobMode::Pull,
            ..JobTypeCatalog::built_in().get("echo").unwrap().clone()
        };
        let catalog = JobTypeCatalog::with_registered([resize]).unwrap();
        let claim = |body: Value| {
            Claim::check(serde_json::from_value(body).unwrap(), &catalog).map(|claim| claim.max)
        };
        assert_eq!(claim(serde_json::json!({"types": ["resize"]})).unwrap(), 1);
        let field = |body: Value| match claim(body) {
            Err(ApiError::InvalidField { field, message }) => (field, message),
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        };
        let (name, message) = field(serde_json::json!({"types": ["echo"]}));
        assert_eq!(name, "types");
        assert!(message.contains("`echo` is a builtin type"), "{message}");
        assert_eq!(field(serde_json::json!({"types": []})).0, "types");
        assert_eq!(field(serde_json::json!({"types": ["nope"]})).0, "types");
        assert_eq!(
            field(serde_json::json!({"types": ["resize"], "max": 101})).0,
            "max"
        );
        assert_eq!(
            field(serde_json::json!({"types": ["resize"], "wait_ms": 30001})).0,
            "wait_ms"
        );
        assert_eq!(
            field(serde_json::json!({"types": ["resize"], "lease_ms": 10})).0,
            "lease_ms"
        );
    }
}
