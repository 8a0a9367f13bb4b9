//! The cache port: job snapshots for reads, idempotency claims, and the change feed that SSE and
//! long-poll listen to. `memory://` now; `redis://` plugs in behind the same trait.

mod memory;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use conveyor_schemas::Job;
use tokio::sync::broadcast;
use uuid::Uuid;

pub use memory::MemoryCache;

use crate::StoreError;

/// Which cache a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheKind {
    Memory,
    Redis { url: String },
}

impl CacheKind {
    pub fn parse(url: &str) -> Result<CacheKind, StoreError> {
        match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("memory") => Ok(CacheKind::Memory),
            Some("redis" | "rediss") => Ok(CacheKind::Redis {
                url: url.to_owned(),
            }),
            _ => Err(StoreError::Config(format!(
                "CONVEYOR_CACHE_URL `{}` is neither memory:// nor redis://",
                crate::db::redact(url)
            ))),
        }
    }
}

/// Who first used an idempotency key, and with what request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub job_id: Uuid,
    /// A digest of the request body, so a reuse with another body can be refused.
    pub request_hash: String,
}

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get_job(&self, id: Uuid) -> Result<Option<Job>, StoreError>;

    /// Keeps `job` if it supersedes the cached snapshot (see [`Job::supersedes`]) and, if so,
    /// announces it to subscribers. Returns whether it was kept: a compare-and-set on versions.
    async fn put_job(&self, job: &Job) -> Result<bool, StoreError>;

    /// Claims `key` for `claim`, or returns whoever claimed it first.
    async fn claim_idempotency_key(
        &self,
        tenant: &str,
        key: &str,
        claim: IdempotencyClaim,
    ) -> Result<Option<IdempotencyClaim>, StoreError>;

    /// Gives a key back when the job it was claimed for could not be accepted.
    async fn release_idempotency_key(&self, tenant: &str, key: &str) -> Result<(), StoreError>;

    /// Counts `job` among `tenant`'s unfinished jobs if fewer than `max` are counted (or it is
    /// counted already), and returns how many are counted now, `job` among them; `None` when it
    /// is refused. A job stops being counted when a terminal snapshot of it is kept
    /// ([`Cache::put_job`]) or it is released.
    async fn admit_in_flight(
        &self,
        tenant: &str,
        job: Uuid,
        max: u32,
    ) -> Result<Option<u32>, StoreError>;

    /// Stops counting `job`: it was never accepted, or it turned out to be finished.
    async fn release_in_flight(&self, tenant: &str, job: Uuid) -> Result<(), StoreError>;

    /// The oldest `count` jobs counted for `tenant`, oldest first.
    async fn oldest_in_flight(&self, tenant: &str, count: usize) -> Result<Vec<Uuid>, StoreError>;

    /// Takes (or renews) the lease on running `job` for `holder` for `ttl`, unless another
    /// holder's lease on it is live. Returns whether `holder` holds it now: the lease decides which
    /// worker may run an attempt, so that a worker that is merely slow (or whose broker handed
    /// its message to another worker) is not taken over, while a dead one is, once its lease ends.
    async fn hold_lease(&self, job: Uuid, holder: Uuid, ttl: Duration) -> Result<bool, StoreError>;

    /// Ends `holder`'s lease on `job`, if it holds it.
    async fn release_lease(&self, job: Uuid, holder: Uuid) -> Result<(), StoreError>;

    /// Whether anyone's lease on `job` is live. Only looks: a check that took the lease, even for
    /// a moment, could make a live worker's renewal fail.
    async fn lease_held(&self, job: Uuid) -> Result<bool, StoreError>;

    /// Every snapshot kept from now on, in order per job.
    fn subscribe(&self) -> broadcast::Receiver<Arc<Job>>;

    async fn ping(&self) -> Result<(), StoreError>;
}
