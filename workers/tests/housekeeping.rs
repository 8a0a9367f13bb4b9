//! The deployment's housekeeping on a real SQLite store. The rescuer: a job left `running` with no
//! lease and no message is put back to its queue; one whose worker still renews its lease is left
//! alone. The pruner: jobs that ended before the retention period are deleted, the rest kept.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use conveyor_events::{Broker, Command, MemoryBroker, Queues, Topics, Topology};
use conveyor_schemas::{DEFAULT_QUEUE, Job, JobStatus};
use conveyor_store::{Cache, Database, JobStore, JobTypeStore, Ledger, LiveCatalog, MemoryCache};
use conveyor_workers::{Pruner, Rescuer};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A job that started running a minute ago, its attempt `attempts`.
fn running(attempts: u32) -> Job {
    let then = Utc::now() - chrono::Duration::minutes(1);
    Job {
        job_type: "sleep".into(),
        status: JobStatus::Running,
        payload: json!({"ms": 1}),
        attempts,
        max_attempts: 2,
        created_at: then,
        updated_at: then,
        started_at: Some(then),
        version: 2,
        ..Job::fixture()
    }
}

/// A migrated SQLite database in a directory of its own, removed when dropped.
async fn sqlite() -> (Database, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let database = Database::connect(&url, None, None).await.unwrap();
    database.migrate().await.unwrap();
    (database, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_attempts_are_rescued_and_live_ones_left_alone() {
    let (database, _dir) = sqlite().await;
    let cache = Arc::new(MemoryCache::new());
    let catalog = LiveCatalog::load(JobTypeStore::new(database.clone()))
        .await
        .unwrap();
    let ledger = Ledger::new(cache.clone(), JobStore::new(database));
    let topics = Topics::new("t.");
    let broker = Arc::new(MemoryBroker::new());
    broker.declare_groups(&Topology::conveyor(&topics, [DEFAULT_QUEUE]));
    let queues = Arc::new(Queues::new(
        broker.clone(),
        topics.clone(),
        [DEFAULT_QUEUE.into()],
    ));
    let mut commands = broker
        .subscribe(&topics.jobs(), Topics::WORKERS)
        .await
        .unwrap();
    let dead_letters = broker
        .subscribe(&topics.dead_letter(), Topics::WORKERS)
        .await;

    let lost = running(1);
    let out_of_attempts = running(2);
    let alive = running(1);
    for job in [&lost, &out_of_attempts, &alive] {
        ledger.accepted(job).await.unwrap();
        ledger.record(job).await.unwrap();
    }
    let worker = Uuid::now_v7();
    let renewals = tokio::spawn({
        let cache = cache.clone();
        let id = alive.id;
        async move {
            loop {
                assert!(
                    cache
                        .hold_lease(id, worker, Duration::from_secs(10))
                        .await
                        .unwrap()
                );
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        }
    });

    let shutdown = CancellationToken::new();
    let rescuer = Rescuer::new(
        queues.clone(),
        ledger.clone(),
        catalog.clone(),
        Duration::from_secs(5),
    );
    let rescuing = tokio::spawn(rescuer.run(shutdown.clone()));

    // Suspected on one sweep, rescued on the next.
    let delivered = tokio::time::timeout(Duration::from_secs(30), commands.recv(1))
        .await
        .expect("the lost job's command is published again")
        .unwrap();
    let Command::RunJob { job } = Command::decode(&delivered[0].payload).unwrap();
    assert_eq!(job.id, lost.id);
    let rescued = ledger.get(lost.id).await.unwrap().unwrap();
    assert_eq!(rescued.status, JobStatus::Retrying, "{rescued:?}");
    assert_eq!(rescued.attempts, 1, "the lost attempt counts");
    assert!(rescued.error.unwrap().contains("was lost"));

    let mut dead_letters = dead_letters.unwrap();
    let dead = tokio::time::timeout(Duration::from_secs(10), dead_letters.recv(1))
        .await
        .expect("the job out of attempts is dead-lettered")
        .unwrap();
    let Command::RunJob { job } = Command::decode(&dead[0].payload).unwrap();
    assert_eq!(job.id, out_of_attempts.id);
    let failed = ledger
        .store()
        .get(out_of_attempts.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, JobStatus::Failed, "committed to the store");

    // Two more sweeps: the job whose worker lives is never taken for lost.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let still = ledger.get(alive.id).await.unwrap().unwrap();
    assert_eq!(still.status, JobStatus::Running);
    assert_eq!(still.version, alive.version);
    shutdown.cancel();
    rescuing.await.unwrap();
    renewals.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_ended_before_the_retention_period_are_pruned_and_the_rest_kept() {
    let (database, _dir) = sqlite().await;
    let ledger = Ledger::new(Arc::new(MemoryCache::new()), JobStore::new(database));
    let ended = |status, ago: chrono::Duration| Job {
        status,
        updated_at: Utc::now() - ago,
        ..running(1)
    };
    let expired = ended(JobStatus::Succeeded, chrono::Duration::hours(2));
    let recent = ended(JobStatus::Failed, chrono::Duration::minutes(10));
    let unfinished = ended(JobStatus::Running, chrono::Duration::hours(2));
    for job in [&expired, &recent, &unfinished] {
        ledger.record(job).await.unwrap();
    }
    let shutdown = CancellationToken::new();
    let pruning = tokio::spawn(
        Pruner::new(
            ledger.clone(),
            Some(Duration::from_secs(60 * 60)),
            Duration::from_millis(50),
        )
        .run(shutdown.clone()),
    );
    let store = ledger.store();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.get(expired.id).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.get(recent.id).await.unwrap().is_some());
    assert!(store.get(unfinished.id).await.unwrap().is_some());
    shutdown.cancel();
    pruning.await.unwrap();
}
