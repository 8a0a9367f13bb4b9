//! The ledger across a cache outage and a lagging read replica: nothing it caches is older than
//! the newest snapshot, and what the cache held before an outage is not thrown away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use conveyor_schemas::lifecycle::{Event, Outcome};
use conveyor_schemas::{Job, JobStatus};
use conveyor_store::{
    Cache, Change, Database, IdempotencyClaim, JobStore, Ledger, MemoryCache, StoreError,
};
use serde_json::json;
use tempfile::TempDir;
use tokio::sync::broadcast;
use uuid::Uuid;

/// A memory cache that can be taken down: every call fails meanwhile.
#[derive(Default)]
struct Flaky {
    inner: MemoryCache,
    down: AtomicBool,
}

impl Flaky {
    fn up(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Cache("down for the test".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Cache for Flaky {
    async fn get_job(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        self.up()?;
        self.inner.get_job(id).await
    }
    async fn put_job(&self, job: &Job) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.put_job(job).await
    }
    async fn claim_idempotency_key(
        &self,
        tenant: &str,
        key: &str,
        claim: IdempotencyClaim,
    ) -> Result<Option<IdempotencyClaim>, StoreError> {
        self.up()?;
        self.inner.claim_idempotency_key(tenant, key, claim).await
    }
    async fn release_idempotency_key(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        self.up()?;
        self.inner.release_idempotency_key(tenant, key).await
    }
    async fn admit_in_flight(
        &self,
        tenant: &str,
        job: Uuid,
        max: u32,
    ) -> Result<Option<u32>, StoreError> {
        self.up()?;
        self.inner.admit_in_flight(tenant, job, max).await
    }
    async fn release_in_flight(&self, tenant: &str, job: Uuid) -> Result<(), StoreError> {
        self.up()?;
        self.inner.release_in_flight(tenant, job).await
    }
    async fn oldest_in_flight(&self, tenant: &str, count: usize) -> Result<Vec<Uuid>, StoreError> {
        self.up()?;
        self.inner.oldest_in_flight(tenant, count).await
    }
    async fn hold_lease(&self, job: Uuid, holder: Uuid, ttl: Duration) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.hold_lease(job, holder, ttl).await
    }
    async fn release_lease(&self, job: Uuid, holder: Uuid) -> Result<(), StoreError> {
        self.up()?;
        self.inner.release_lease(job, holder).await
    }
    async fn lease_held(&self, job: Uuid) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.lease_held(job).await
    }
    fn subscribe(&self) -> broadcast::Receiver<Arc<Job>> {
        self.inner.subscribe()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.up()
    }
}

fn running() -> Job {
    let now = Utc::now();
    Job {
        id: Uuid::now_v7(),
        job_type: "echo".into(),
        status: JobStatus::Running,
        payload: json!({}),
        result: None,
        error: None,
        attempts: 1,
        max_attempts: 3,
        progress: None,
        created_at: now,
        updated_at: now,
        run_at: None,
        started_at: Some(now),
        finished_at: None,
        timeout_ms: None,
        version: 2,
        tenant: "acme".into(),
        cancel_requested: false,
        idempotency_key: None,
    }
}

async fn sqlite(dir: &TempDir, name: &str) -> String {
    let url = format!("sqlite://{}?mode=rwc", dir.path().join(name).display());
    Database::connect(&url, None, None)
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    url
}

#[tokio::test]
async fn after_an_outage_the_cache_keeps_what_it_had_and_gets_what_changed_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite(&dir, "primary.db").await;
    let database = Database::connect(&url, None, None).await.unwrap();
    let cache = Arc::new(Flaky::default());
    let ledger = Ledger::new(cache.clone(), JobStore::new(database));
    let untouched = running();
    let finished_meanwhile = running();
    for job in [&untouched, &finished_meanwhile] {
        ledger.accepted(job).await.unwrap();
        ledger.record(job).await.unwrap();
    }

    cache.down.store(true, Ordering::SeqCst);
    let finish = Event::Finish {
        attempt: 1,
        outcome: Outcome::Succeeded(json!("done")),
    };
    let Change::Applied(done) = ledger.apply(&finished_meanwhile, &finish).await.unwrap() else {
        panic!("the attempt's outcome is recorded in the store alone");
    };
    cache.down.store(false, Ordering::SeqCst);
    // The first answer after the outage.
    assert_eq!(ledger.get(untouched.id).await.unwrap().unwrap().version, 2);

    let mut cached = None;
    for _ in 0..100 {
        cached = cache.inner.get_job(done.id).await.unwrap();
        if cached
            .as_ref()
            .is_some_and(|job| job.status == JobStatus::Succeeded)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cached.map(|job| job.version), Some(done.version));
    assert!(
        cache.inner.get_job(untouched.id).await.unwrap().is_some(),
        "snapshots the outage did not touch stay cached"
    );
}

#[tokio::test]
async fn an_unfinished_job_read_from_a_lagging_replica_is_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let primary = sqlite(&dir, "primary.db").await;
    let replica = sqlite(&dir, "replica.db").await;
    let job = running();
    // The replica has yet to see the job succeed.
    JobStore::new(Database::connect(&replica, None, None).await.unwrap())
        .write(job.clone())
        .await
        .unwrap();
    let database = Database::connect(&primary, Some(&replica), None)
        .await
        .unwrap();
    let store = JobStore::new(database);
    let succeeded = Job {
        status: JobStatus::Succeeded,
        version: 3,
        finished_at: Some(Utc::now()),
        ..job.clone()
    };
    store.write(succeeded).await.unwrap();
    let cache = Arc::new(MemoryCache::new());
    let ledger = Ledger::new(cache.clone(), store);

    assert_eq!(
        ledger.get(job.id).await.unwrap().unwrap().status,
        JobStatus::Running,
        "the replica is behind"
    );
    assert!(
        cache.get_job(job.id).await.unwrap().is_none(),
        "what a replica says of an unfinished job is never taken for the newest"
    );
}
