//! What every cache does for quotas of unfinished jobs and leases on running jobs, run on the
//! in-process cache and on Redis (`CONVEYOR_TEST_REDIS`, else `redis://127.0.0.1:6379`). Each case
//! gets two replicas: two connections to one Redis namespace, or the one in-process cache twice.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use conveyor_redis::RedisCache;
use conveyor_schemas::{Job, JobStatus};
use conveyor_store::{Cache, MemoryCache};
use serde_json::json;
use uuid::Uuid;

type Replicas = [Arc<dyn Cache>; 2];

fn memory() -> Replicas {
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new());
    [cache.clone(), cache]
}

async fn redis() -> Replicas {
    let url =
        std::env::var("CONVEYOR_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("test-{}:", Uuid::now_v7().simple());
    let replica = async || RedisCache::connect(&url, &prefix).await.unwrap();
    [Arc::new(replica().await), Arc::new(replica().await)]
}

macro_rules! on_every_cache {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn memory() {
                super::$case(super::memory()).await;
            }

            #[tokio::test]
            async fn redis() {
                super::$case(super::redis().await).await;
            }
        }
    )*};
}

on_every_cache!(
    unfinished_jobs_count_up_to_the_quota_and_leave_when_terminal,
    a_lease_keeps_other_holders_out_until_it_ends_or_is_released,
);

fn queued() -> Job {
    let now = Utc::now();
    Job {
        id: Uuid::now_v7(),
        job_type: "echo".into(),
        status: JobStatus::Queued,
        payload: json!({}),
        result: None,
        error: None,
        attempts: 0,
        max_attempts: 3,
        progress: None,
        created_at: now,
        updated_at: now,
        run_at: None,
        started_at: None,
        finished_at: None,
        timeout_ms: None,
        version: 1,
        tenant: "acme".into(),
        cancel_requested: false,
        idempotency_key: None,
    }
}

async fn unfinished_jobs_count_up_to_the_quota_and_leave_when_terminal([a, b]: Replicas) {
    let (first, second) = (queued(), queued());
    assert!(a.admit_in_flight("acme", first.id, 2).await.unwrap());
    assert!(b.admit_in_flight("acme", second.id, 2).await.unwrap());
    // Counted once, however often it is admitted.
    assert!(a.admit_in_flight("acme", first.id, 2).await.unwrap());
    assert!(!b.admit_in_flight("acme", Uuid::now_v7(), 2).await.unwrap());
    assert!(
        a.admit_in_flight("globex", Uuid::now_v7(), 2)
            .await
            .unwrap()
    );
    assert_eq!(
        b.oldest_in_flight("acme", 10).await.unwrap(),
        [first.id, second.id]
    );

    // A terminal snapshot kept through either replica frees the place; other snapshots do not.
    let running = Job {
        status: JobStatus::Running,
        version: 2,
        ..first.clone()
    };
    assert!(a.put_job(&running).await.unwrap());
    assert_eq!(b.oldest_in_flight("acme", 1).await.unwrap(), [first.id]);
    let done = Job {
        status: JobStatus::Succeeded,
        version: 3,
        ..first.clone()
    };
    assert!(b.put_job(&done).await.unwrap());
    assert_eq!(a.oldest_in_flight("acme", 10).await.unwrap(), [second.id]);
    a.release_in_flight("acme", second.id).await.unwrap();
    assert!(a.oldest_in_flight("acme", 10).await.unwrap().is_empty());
}

async fn a_lease_keeps_other_holders_out_until_it_ends_or_is_released([a, b]: Replicas) {
    let (job, first, second) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let short = Duration::from_millis(300);
    assert!(a.hold_lease(job, first, short).await.unwrap());
    assert!(!b.hold_lease(job, second, short).await.unwrap());
    // Its holder renews it; another holder's release leaves it alone.
    assert!(b.hold_lease(job, first, short).await.unwrap());
    b.release_lease(job, second).await.unwrap();
    assert!(!a.hold_lease(job, second, short).await.unwrap());

    // Once it ends, another holder takes it.
    tokio::time::sleep(short * 2).await;
    assert!(
        b.hold_lease(job, second, Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(!a.hold_lease(job, first, short).await.unwrap());
    // Released, it is free at once.
    a.release_lease(job, second).await.unwrap();
    assert!(b.hold_lease(job, first, short).await.unwrap());
}
