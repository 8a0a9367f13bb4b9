//! The recorder on PostgreSQL: a job the database refuses to hold fails and is dead-lettered by
//! itself, and the jobs recorded with it are not held up.

use std::sync::Arc;
use std::time::Duration;

use conveyor_events::{Broker, Command, MemoryBroker, Outgoing, Queues, Topics, Topology};
use conveyor_schemas::lifecycle::UNSTORABLE;
use conveyor_schemas::{DEFAULT_QUEUE, Job, JobStatus};
use conveyor_store::{Database, JobStore, JobTypeStore, Ledger, LiveCatalog, MemoryCache};
use conveyor_workers::Recorder;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn queued(tenant: &str, payload: Value) -> Job {
    Job {
        tenant: tenant.into(),
        payload,
        ..Job::fixture()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_database_refuses_fails_alone_and_holds_up_no_other() {
    let url = std::env::var("CONVEYOR_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("t_{}", Uuid::now_v7().simple());
    let database = Database::connect(&url, None, Some(&schema)).await.unwrap();
    database.migrate().await.unwrap();
    let catalog = LiveCatalog::load(JobTypeStore::new(database.clone()))
        .await
        .unwrap();
    let ledger = Ledger::new(Arc::new(MemoryCache::new()), JobStore::new(database));
    let topics = Topics::new("t.");
    let broker = Arc::new(MemoryBroker::new());
    broker.declare_groups(&Topology::conveyor(&topics, [DEFAULT_QUEUE]));
    let queues = Arc::new(Queues::new(
        broker.clone(),
        topics.clone(),
        [DEFAULT_QUEUE.into()],
    ));
    let mut dead_letters = broker
        .subscribe(&topics.dead_letter(), Topics::WORKERS)
        .await
        .unwrap();

    // Past the API's checks (which refuse it at the edge), as from an older api replica.
    let refused = queued("mallory", json!({"a": "x\u{0}y"}));
    let others: Vec<Job> = (0..20).map(|n| queued("alice", json!({"n": n}))).collect();
    let mut commands = Vec::new();
    for job in std::iter::once(&refused).chain(&others) {
        ledger.accepted(job).await.unwrap();
        let command = Command::RunJob { job: job.clone() }.encode();
        commands.push(Outgoing::now(job.id.to_string(), command));
    }
    broker.publish(&topics.jobs(), commands).await.unwrap();
    let shutdown = CancellationToken::new();
    let recorder = Recorder::new(queues.clone(), ledger.clone(), catalog.clone());
    let recording = tokio::spawn(recorder.run(shutdown.clone()));

    let dead = tokio::time::timeout(Duration::from_secs(10), dead_letters.recv(1))
        .await
        .expect("the refused job is dead-lettered")
        .unwrap();
    let Command::RunJob { job } = Command::decode(&dead[0].payload).unwrap();
    assert_eq!(job.id, refused.id);
    assert_eq!(job.payload, refused.payload, "kept whole");
    let shown = ledger.get(refused.id).await.unwrap().unwrap();
    assert_eq!(shown.status, JobStatus::Failed);
    assert_eq!(shown.error.as_deref(), Some(UNSTORABLE));
    for job in &others {
        let mut stored = None;
        for _ in 0..100 {
            stored = ledger.store().get(job.id).await.unwrap();
            if stored.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(stored.is_some(), "alice's job {} was held up", job.id);
    }
    shutdown.cancel();
    recording.await.unwrap().unwrap();
}
