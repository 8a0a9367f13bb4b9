//! The rescuer on a real SQLite store: a job left `running` with no lease and no message is put
//! back to its queue; one whose worker still renews its lease is left alone.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use conveyor_events::{Broker, Command, MemoryBroker, Topics, Topology};
use conveyor_schemas::{Job, JobStatus};
use conveyor_store::{Cache, Database, JobStore, Ledger, MemoryCache};
use conveyor_workers::Rescuer;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A job that started running a minute ago, its attempt `attempts`.
fn running(attempts: u32) -> Job {
    let then = Utc::now() - chrono::Duration::minutes(1);
    Job {
        id: Uuid::now_v7(),
        job_type: "sleep".into(),
        status: JobStatus::Running,
        payload: json!({"ms": 1}),
        result: None,
        error: None,
        attempts,
        max_attempts: 2,
        progress: None,
        created_at: then,
        updated_at: then,
        run_at: None,
        started_at: Some(then),
        finished_at: None,
        timeout_ms: None,
        version: 2,
        tenant: "acme".into(),
        cancel_requested: false,
        idempotency_key: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_attempts_are_rescued_and_live_ones_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let database = Database::connect(&url, None, None).await.unwrap();
    database.migrate().await.unwrap();
    let cache = Arc::new(MemoryCache::new());
    let ledger = Ledger::new(cache.clone(), JobStore::new(database));
    let topics = Topics::new("t.");
    let broker = Arc::new(MemoryBroker::new());
    broker.declare(&Topology::conveyor(&topics));
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
        broker.clone(),
        ledger.clone(),
        topics.clone(),
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
