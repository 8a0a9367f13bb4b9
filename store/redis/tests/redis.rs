//! The Redis cache on a real Redis (`CONVEYOR_TEST_REDIS`, else `redis://127.0.0.1:6379`): versions
//! never go backwards, terminal states are final, one claim of a key wins, and a change kept through
//! one replica reaches every other, also after the feed lost its connection; rate limits are shared
//! by the replicas. Quotas and leases are checked on the in-process cache too, as one contract.

use std::sync::Arc;
use std::time::{Duration, Instant};

use conveyor_redis::RedisCache;
use conveyor_schemas::{Job, JobStatus};
use conveyor_store::{Cache, IdempotencyClaim, MemoryCache, Rate, RateLimiter, StoreError};
use futures_util::future::join_all;
use tokio::sync::broadcast;
use uuid::Uuid;

fn redis_url() -> String {
    std::env::var("CONVEYOR_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique_prefix() -> String {
    format!("test-{}:", Uuid::now_v7().simple())
}

async fn replica(prefix: &str) -> RedisCache {
    RedisCache::connect(&redis_url(), prefix).await.unwrap()
}

fn job(status: JobStatus, version: u64) -> Job {
    Job {
        status,
        version,
        ..Job::fixture()
    }
}

fn claim(request_hash: &str) -> IdempotencyClaim {
    IdempotencyClaim {
        job_id: Uuid::now_v7(),
        request_hash: request_hash.into(),
    }
}

async fn next_change(changes: &mut broadcast::Receiver<Arc<Job>>) -> Job {
    let change = tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("no change arrived within 10 s")
        .unwrap();
    (*change).clone()
}

async fn assert_no_change(changes: &mut broadcast::Receiver<Arc<Job>>) {
    let waited = tokio::time::timeout(Duration::from_millis(300), changes.recv()).await;
    assert!(waited.is_err(), "unexpected change: {waited:?}");
}

#[tokio::test]
async fn the_cache_refuses_older_and_post_terminal_snapshots() {
    let cache = replica(&unique_prefix()).await;
    let v2 = job(JobStatus::Running, 2);
    assert!(cache.put_job(&v2).await.unwrap());
    let older = Job {
        version: 1,
        ..v2.clone()
    };
    assert!(!cache.put_job(&older).await.unwrap());
    let same_version = Job {
        status: JobStatus::Queued,
        ..v2.clone()
    };
    assert!(!cache.put_job(&same_version).await.unwrap());
    let v3 = Job {
        version: 3,
        status: JobStatus::Cancelled,
        ..v2.clone()
    };
    assert!(cache.put_job(&v3).await.unwrap());
    let after_terminal = Job {
        version: 4,
        status: JobStatus::Succeeded,
        ..v2.clone()
    };
    assert!(!cache.put_job(&after_terminal).await.unwrap());
    assert_eq!(cache.get_job(v2.id).await.unwrap(), Some(v3));
}

#[tokio::test]
async fn an_unknown_job_is_not_in_the_cache() {
    let cache = replica(&unique_prefix()).await;
    assert_eq!(cache.get_job(Uuid::now_v7()).await.unwrap(), None);
}

#[tokio::test]
async fn one_of_many_concurrent_claims_of_a_key_wins_and_the_others_see_its_claim() {
    let prefix = unique_prefix();
    let replicas = [replica(&prefix).await, replica(&prefix).await];
    let claims = (0..20).map(|n| {
        let cache = replicas[n % 2].clone();
        tokio::spawn(async move {
            let mine = claim(&format!("h{n}"));
            let earlier = cache
                .claim_idempotency_key("acme", "k", mine.clone())
                .await
                .unwrap();
            (mine, earlier)
        })
    });
    let outcomes: Vec<_> = join_all(claims)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let winners: Vec<_> = outcomes
        .iter()
        .filter(|(_, earlier)| earlier.is_none())
        .map(|(mine, _)| mine.clone())
        .collect();
    assert_eq!(winners.len(), 1);
    for (_, earlier) in outcomes.iter().filter(|(_, earlier)| earlier.is_some()) {
        assert_eq!(earlier.as_ref(), Some(&winners[0]));
    }
}

#[tokio::test]
async fn a_released_key_can_be_claimed_again() {
    let cache = replica(&unique_prefix()).await;
    let first = claim("h1");
    assert_eq!(
        cache
            .claim_idempotency_key("acme", "k", first.clone())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        cache
            .claim_idempotency_key("acme", "k", claim("h2"))
            .await
            .unwrap(),
        Some(first)
    );
    cache.release_idempotency_key("acme", "k").await.unwrap();
    let second = claim("h3");
    assert_eq!(
        cache
            .claim_idempotency_key("acme", "k", second.clone())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        cache
            .claim_idempotency_key("acme", "k", claim("h4"))
            .await
            .unwrap(),
        Some(second)
    );
}

#[tokio::test]
async fn keys_of_different_tenants_do_not_collide() {
    let cache = replica(&unique_prefix()).await;
    for (tenant, key) in [("a:b", "c"), ("a", "b:c")] {
        let claimed = cache
            .claim_idempotency_key(tenant, key, claim("h"))
            .await
            .unwrap();
        assert_eq!(claimed, None, "{tenant} / {key}");
    }
}

#[tokio::test]
async fn concurrent_updates_through_two_replicas_all_apply_one_version_apart_and_in_order() {
    let prefix = unique_prefix();
    let replicas = [replica(&prefix).await, replica(&prefix).await];
    let mut changes = replicas[0].subscribe();
    let start = job(JobStatus::Running, 1);
    assert!(replicas[1].put_job(&start).await.unwrap());
    let updates = (0..20).map(|n| {
        let cache = replicas[n % 2].clone();
        let id = start.id;
        tokio::spawn(async move {
            // What Ledger::update does: read, change, and retry when another writer got there first.
            loop {
                let current = cache.get_job(id).await.unwrap().unwrap();
                let next = Job {
                    progress: Some(n as f64),
                    ..current.next()
                };
                if cache.put_job(&next).await.unwrap() {
                    return;
                }
            }
        })
    });
    for update in join_all(updates).await {
        update.unwrap();
    }
    assert_eq!(
        replicas[0]
            .get_job(start.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        21
    );
    let mut progress = Vec::new();
    for version in 1..=21 {
        let change = next_change(&mut changes).await;
        assert_eq!(change.version, version);
        progress.extend(change.progress);
    }
    progress.sort_by(f64::total_cmp);
    assert_eq!(progress, (0..20).map(f64::from).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_job_kept_through_one_replica_reaches_the_others_subscribers_and_reads() {
    let prefix = unique_prefix();
    let (api, worker) = (replica(&prefix).await, replica(&prefix).await);
    let mut changes = api.subscribe();
    let running = job(JobStatus::Running, 2);
    assert!(worker.put_job(&running).await.unwrap());
    assert_eq!(next_change(&mut changes).await, running);
    assert_eq!(api.get_job(running.id).await.unwrap(), Some(running));
}

#[tokio::test]
async fn a_large_job_reaches_the_others_subscribers_named_in_the_stream_not_copied() {
    let prefix = unique_prefix();
    let (api, worker) = (replica(&prefix).await, replica(&prefix).await);
    let mut changes = api.subscribe();
    let large = Job {
        payload: serde_json::Value::String("x".repeat(64 * 1024)),
        ..job(JobStatus::Running, 2)
    };
    assert!(worker.put_job(&large).await.unwrap());
    assert_eq!(next_change(&mut changes).await, large);
    let mut admin = admin().await;
    let stream: redis::streams::StreamRangeReply =
        redis::AsyncCommands::xrange_all(&mut admin, format!("{prefix}changes"))
            .await
            .unwrap();
    let entry = &stream.ids[0];
    assert!(
        entry.get::<String>("job").is_none(),
        "the stream copied the job"
    );
    assert_eq!(entry.get::<String>("id"), Some(large.id.to_string()));
}

#[tokio::test]
async fn out_of_order_puts_never_move_a_job_backwards() {
    let prefix = unique_prefix();
    let replicas = [replica(&prefix).await, replica(&prefix).await];
    let mut changes = replicas[0].subscribe();
    let first = job(JobStatus::Queued, 1);
    let mut kept = Vec::new();
    for (n, version) in [3, 1, 5, 2, 4, 10, 6, 9, 7, 8].into_iter().enumerate() {
        let snapshot = Job {
            version,
            ..first.clone()
        };
        if replicas[n % 2].put_job(&snapshot).await.unwrap() {
            kept.push(version);
        }
    }
    assert_eq!(kept, [3, 5, 10]);
    for version in kept {
        assert_eq!(next_change(&mut changes).await.version, version);
    }
    assert_no_change(&mut changes).await;
    for cache in &replicas {
        assert_eq!(cache.get_job(first.id).await.unwrap().unwrap().version, 10);
    }
}

#[tokio::test]
async fn prefixes_keep_deployments_apart() {
    let (one, other) = (
        replica(&unique_prefix()).await,
        replica(&unique_prefix()).await,
    );
    let mut others_changes = other.subscribe();
    let shared = job(JobStatus::Queued, 1);
    assert!(one.put_job(&shared).await.unwrap());
    assert_eq!(other.get_job(shared.id).await.unwrap(), None);
    assert_no_change(&mut others_changes).await;
    // The same job, older, is still new to the other deployment.
    assert!(other.put_job(&shared).await.unwrap());
    assert_eq!(
        one.claim_idempotency_key("acme", "k", claim("h"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        other
            .claim_idempotency_key("acme", "k", claim("h"))
            .await
            .unwrap(),
        None
    );
}

/// The ids of the feed connections of the caches under `prefix`.
async fn feed_clients(admin: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(admin)
        .await
        .unwrap();
    let name = format!("name={prefix}feed");
    clients
        .lines()
        .filter(|client| client.split(' ').any(|field| field == name))
        .filter_map(|client| {
            client
                .split(' ')
                .find_map(|field| field.strip_prefix("id="))
        })
        .map(str::to_owned)
        .collect()
}

async fn admin() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Cuts the connection of the one feed under `prefix`, as a network failure would; returns its id.
async fn kill_feed(admin: &mut redis::aio::MultiplexedConnection, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        // The feed names its connection once it has opened it.
        let ids = feed_clients(admin, prefix).await;
        if let [id] = ids.as_slice() {
            break id.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no single feed connection: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(&id)
        .query_async(admin)
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn the_feed_comes_back_after_losing_its_connection_and_delivers_what_was_kept_meanwhile() {
    let prefix = unique_prefix();
    let cache = replica(&prefix).await;
    let mut changes = cache.subscribe();
    let mut admin = admin().await;
    let killed = kill_feed(&mut admin, &prefix).await;

    let during = job(JobStatus::Queued, 1);
    assert!(cache.put_job(&during).await.unwrap());
    assert!(
        feed_clients(&mut admin, &prefix).await.is_empty(),
        "the feed came back before the job was kept, so nothing was left to catch up on"
    );
    assert_eq!(next_change(&mut changes).await, during);

    let reconnected = feed_clients(&mut admin, &prefix).await;
    assert_eq!(reconnected.len(), 1);
    assert_ne!(reconnected[0], killed);
    let after = Job {
        status: JobStatus::Running,
        ..during.next()
    };
    assert!(cache.put_job(&after).await.unwrap());
    assert_eq!(next_change(&mut changes).await, after);
}

#[tokio::test]
async fn the_feed_reads_a_stream_begun_afresh_from_its_start() {
    let prefix = unique_prefix();
    let cache = replica(&prefix).await;
    let mut changes = cache.subscribe();
    let mut admin = admin().await;
    // An entry from a clock far ahead, then the stream gone, as when Redis comes back empty on
    // another host: the new stream's entries sort before the last one the feed read.
    let ahead = job(JobStatus::Queued, 1);
    let stream = format!("{prefix}changes");
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("99999999999999-0")
        .arg("job")
        .arg(serde_json::to_string(&ahead).unwrap())
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(next_change(&mut changes).await, ahead);
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut admin)
        .await
        .unwrap();
    kill_feed(&mut admin, &prefix).await;

    let afresh = job(JobStatus::Queued, 1);
    assert!(cache.put_job(&afresh).await.unwrap());
    assert_eq!(next_change(&mut changes).await, afresh);
}

#[tokio::test]
async fn a_redis_that_is_not_there_is_an_error_at_once() {
    let started = Instant::now();
    let connected = RedisCache::connect("redis://127.0.0.1:1", &unique_prefix()).await;
    assert!(matches!(connected, Err(StoreError::Cache(_))));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_live_redis_answers_a_ping() {
    replica(&unique_prefix()).await.ping().await.unwrap();
}

#[tokio::test]
async fn replicas_draw_on_one_rate_limit() {
    let prefix = unique_prefix();
    let limiters = [
        replica(&prefix).await.rate_limiter(),
        replica(&prefix).await.rate_limiter(),
    ];
    // One request a minute after a burst of 5: only the burst can pass during the test.
    let rate = Rate::new(1.0 / 60.0, 5).unwrap();
    let mut allowed = 0;
    for n in 0..12 {
        let verdict = limiters[n % 2].take("acme", rate).await;
        if verdict.allowed {
            allowed += 1;
            assert_eq!(verdict.remaining, 5 - allowed);
        } else {
            assert!(verdict.retry_after > Duration::from_secs(50), "{verdict:?}");
        }
    }
    assert_eq!(allowed, 5);
    assert!(limiters[0].take("globex", rate).await.allowed);
}

// What every cache does for quotas of unfinished jobs and leases on running jobs, on the
// in-process cache and on Redis. Each case gets two replicas: two connections to one Redis
// namespace, or the one in-process cache twice.

type Replicas = [Arc<dyn Cache>; 2];

fn memory() -> Replicas {
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new());
    [cache.clone(), cache]
}

async fn redis() -> Replicas {
    let prefix = unique_prefix();
    [
        Arc::new(replica(&prefix).await),
        Arc::new(replica(&prefix).await),
    ]
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

async fn unfinished_jobs_count_up_to_the_quota_and_leave_when_terminal([a, b]: Replicas) {
    let (first, second) = (job(JobStatus::Queued, 1), job(JobStatus::Queued, 1));
    assert_eq!(
        a.admit_in_flight("acme", first.id, 2).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        b.admit_in_flight("acme", second.id, 2).await.unwrap(),
        Some(2)
    );
    // Counted once, however often it is admitted.
    assert_eq!(
        a.admit_in_flight("acme", first.id, 2).await.unwrap(),
        Some(2)
    );
    assert_eq!(
        b.admit_in_flight("acme", Uuid::now_v7(), 2).await.unwrap(),
        None
    );
    assert_eq!(
        a.admit_in_flight("globex", Uuid::now_v7(), 2)
            .await
            .unwrap(),
        Some(1)
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
