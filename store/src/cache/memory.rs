use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use conveyor_schemas::Job;
use moka::ops::compute::Op;
use moka::sync::Cache as Moka;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::{Cache, IdempotencyClaim};
use crate::StoreError;

const MAX_JOBS: u64 = 1_000_000;
/// Bytes of job snapshots kept (as their JSON would take): a count alone let a few hundred jobs
/// of a megabyte each take a gigabyte. What is evicted is read back from the store.
const MAX_JOB_BYTES: u64 = 256 * 1024 * 1024;
/// What a snapshot costs besides its JSON: the entry, the struct, the id and strings.
const JOB_OVERHEAD_BYTES: usize = 256;
const IDLE_JOB_TTL: Duration = Duration::from_secs(60 * 60);
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Changes a slow subscriber may fall behind by before it must re-read (it is told it lagged).
const FEED_CAPACITY: usize = 16 * 1024;

/// The in-process cache of the embedded default, bounded in entries, bytes and age.
pub struct MemoryCache {
    jobs: Moka<Uuid, Arc<Job>>,
    keys: Moka<(String, String), IdempotencyClaim>,
    feed: broadcast::Sender<Arc<Job>>,
    /// Leases on running jobs: holder and end.
    leases: Moka<Uuid, (Uuid, Instant)>,
    /// Unfinished jobs per tenant; UUIDv7 ids sort oldest first.
    in_flight: Mutex<HashMap<String, BTreeSet<Uuid>>>,
}

impl Default for MemoryCache {
    fn default() -> Self {
        MemoryCache::new()
    }
}

impl MemoryCache {
    pub fn new() -> MemoryCache {
        MemoryCache {
            jobs: Moka::builder()
                .weigher(|_, job: &Arc<Job>| weight(job))
                .max_capacity(MAX_JOB_BYTES)
                .time_to_idle(IDLE_JOB_TTL)
                .build(),
            keys: Moka::builder()
                .max_capacity(MAX_JOBS)
                .time_to_live(IDEMPOTENCY_TTL)
                .build(),
            feed: broadcast::channel(FEED_CAPACITY).0,
            in_flight: Mutex::default(),
            leases: Moka::builder()
                .max_capacity(MAX_JOBS)
                .time_to_idle(IDLE_JOB_TTL)
                .build(),
        }
    }
}

/// A snapshot's weight in the cache: about the bytes it holds.
fn weight(job: &Job) -> u32 {
    /// Counts what is written to it, keeping nothing.
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(JOB_OVERHEAD_BYTES);
    // A job always serializes; were it not to, it would weigh its overhead alone.
    let _ = serde_json::to_writer(&mut counter, job);
    u32::try_from(counter.0).unwrap_or(u32::MAX)
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get_job(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        Ok(self.jobs.get(&id).map(|job| (*job).clone()))
    }

    async fn put_job(&self, job: &Job) -> Result<bool, StoreError> {
        let mut kept = false;
        self.jobs.entry(job.id).and_compute_with(|current| {
            if current.is_some_and(|current| !job.supersedes(current.value())) {
                return Op::Nop;
            }
            kept = true;
            let snapshot = Arc::new(job.clone());
            // Announced under the entry's lock, so subscribers see one job's versions in order.
            let _ = self.feed.send(snapshot.clone());
            Op::Put(snapshot)
        });
        if kept && job.status.is_terminal() {
            self.release_in_flight(&job.tenant, job.id).await?;
        }
        Ok(kept)
    }

    async fn claim_idempotency_key(
        &self,
        tenant: &str,
        key: &str,
        claim: IdempotencyClaim,
    ) -> Result<Option<IdempotencyClaim>, StoreError> {
        // A compute, not `or_insert`: only it is atomic against a concurrent claim of the key.
        let mut holder = None;
        self.keys
            .entry((tenant.to_owned(), key.to_owned()))
            .and_compute_with(|current| match current {
                Some(current) => {
                    holder = Some(current.into_value());
                    Op::Nop
                }
                None => Op::Put(claim),
            });
        Ok(holder)
    }

    async fn release_idempotency_key(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        self.keys.invalidate(&(tenant.to_owned(), key.to_owned()));
        Ok(())
    }

    async fn admit_in_flight(
        &self,
        tenant: &str,
        job: Uuid,
        max: u32,
    ) -> Result<Option<u32>, StoreError> {
        let mut in_flight = self.in_flight.lock().expect("no panic holds the lock");
        let jobs = in_flight.entry(tenant.to_owned()).or_default();
        if !jobs.contains(&job) {
            if jobs.len() >= max as usize {
                return Ok(None);
            }
            jobs.insert(job);
        }
        Ok(Some(u32::try_from(jobs.len()).unwrap_or(u32::MAX)))
    }

    async fn release_in_flight(&self, tenant: &str, job: Uuid) -> Result<(), StoreError> {
        let mut in_flight = self.in_flight.lock().expect("no panic holds the lock");
        if let Some(jobs) = in_flight.get_mut(tenant) {
            jobs.remove(&job);
            if jobs.is_empty() {
                in_flight.remove(tenant);
            }
        }
        Ok(())
    }

    async fn oldest_in_flight(&self, tenant: &str, count: usize) -> Result<Vec<Uuid>, StoreError> {
        let in_flight = self.in_flight.lock().expect("no panic holds the lock");
        Ok(in_flight
            .get(tenant)
            .map(|jobs| jobs.iter().take(count).copied().collect())
            .unwrap_or_default())
    }

    async fn hold_lease(&self, job: Uuid, holder: Uuid, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut held = false;
        self.leases.entry(job).and_compute_with(|current| {
            if let Some(current) = current
                && current.value().0 != holder
                && current.value().1 > now
            {
                return Op::Nop;
            }
            held = true;
            Op::Put((holder, now + ttl))
        });
        Ok(held)
    }

    async fn release_lease(&self, job: Uuid, holder: Uuid) -> Result<(), StoreError> {
        self.leases
            .entry(job)
            .and_compute_with(|current| match current {
                Some(current) if current.value().0 == holder => Op::Remove,
                _ => Op::Nop,
            });
        Ok(())
    }

    async fn lease_held(&self, job: Uuid) -> Result<bool, StoreError> {
        Ok(self
            .leases
            .get(&job)
            .is_some_and(|(_, end)| end > Instant::now()))
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Job>> {
        self.feed.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn snapshots_are_bounded_in_bytes_not_only_in_number() {
        let cache = MemoryCache::new();
        let megabyte = serde_json::Value::String("x".repeat(1024 * 1024));
        for _ in 0..300 {
            let job = Job {
                payload: megabyte.clone(),
                ..Job::fixture()
            };
            cache.put_job(&job).await.unwrap();
        }
        cache.jobs.run_pending_tasks();
        assert!(cache.jobs.weighted_size() <= MAX_JOB_BYTES);
        assert!(cache.jobs.entry_count() < 300);
    }
}
