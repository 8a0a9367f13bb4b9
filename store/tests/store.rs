//! The store and ledger on a real SQLite file: versions never go backwards, terminal states are
//! final, and the broker journal survives a restart.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use conveyor_events::{Broker, MemoryBroker, Outgoing, Topology};
use conveyor_schemas::{Job, JobStatus};
use conveyor_store::{
    Cache, Change, Database, IdempotencyClaim, JobQuery, JobStore, Ledger, MemoryCache, SqlJournal,
};
use futures_util::future::join_all;
use serde_json::json;
use tempfile::TempDir;
use uuid::Uuid;

async fn database() -> (Database, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let database = Database::connect(&url, None).await.unwrap();
    database.migrate().await.unwrap();
    (database, dir)
}

fn job(status: JobStatus, version: u64) -> Job {
    let now = Utc::now();
    Job {
        id: Uuid::now_v7(),
        job_type: "echo".into(),
        status,
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
        version,
        tenant: "acme".into(),
        cancel_requested: false,
        idempotency_key: None,
    }
}

#[tokio::test]
async fn the_store_keeps_the_newest_version_whatever_the_write_order() {
    let (database, _dir) = database().await;
    let store = JobStore::new(database);
    let v1 = job(JobStatus::Queued, 1);
    let v3 = Job {
        status: JobStatus::Running,
        version: 3,
        ..v1.clone()
    };
    let v2 = Job {
        status: JobStatus::Queued,
        version: 2,
        ..v1.clone()
    };
    store.write(v3.clone()).await.unwrap();
    store.write(v2).await.unwrap();
    store.write(v1.clone()).await.unwrap();
    assert_eq!(store.get(v1.id).await.unwrap().unwrap().version, 3);
}

#[tokio::test]
async fn a_terminal_job_in_the_store_is_final() {
    let (database, _dir) = database().await;
    let store = JobStore::new(database);
    let done = job(JobStatus::Succeeded, 3);
    store.write(done.clone()).await.unwrap();
    let later = Job {
        status: JobStatus::Running,
        version: 9,
        ..done.clone()
    };
    store.write(later).await.unwrap();
    let stored = store.get(done.id).await.unwrap().unwrap();
    assert_eq!((stored.status, stored.version), (JobStatus::Succeeded, 3));
}

#[tokio::test]
async fn the_cache_refuses_older_and_post_terminal_snapshots() {
    let cache = MemoryCache::new();
    let v2 = job(JobStatus::Running, 2);
    assert!(cache.put_job(&v2).await.unwrap());
    assert!(
        !cache
            .put_job(&Job {
                version: 1,
                ..v2.clone()
            })
            .await
            .unwrap()
    );
    assert!(
        !cache
            .put_job(&Job {
                version: 2,
                status: JobStatus::Queued,
                ..v2.clone()
            })
            .await
            .unwrap()
    );
    let v3 = Job {
        version: 3,
        status: JobStatus::Cancelled,
        ..v2.clone()
    };
    assert!(cache.put_job(&v3).await.unwrap());
    assert!(
        !cache
            .put_job(&Job {
                version: 4,
                status: JobStatus::Succeeded,
                ..v2.clone()
            })
            .await
            .unwrap()
    );
    assert_eq!(
        cache.get_job(v2.id).await.unwrap().unwrap().status,
        JobStatus::Cancelled
    );
}

#[tokio::test]
async fn one_of_many_concurrent_claims_of_a_key_wins() {
    let cache = Arc::new(MemoryCache::new());
    let claims = (0..32).map(|_| {
        let cache = cache.clone();
        tokio::spawn(async move {
            let claim = IdempotencyClaim {
                job_id: Uuid::now_v7(),
                request_hash: "h".into(),
            };
            cache
                .claim_idempotency_key("acme", "k", claim)
                .await
                .unwrap()
        })
    });
    let winners = join_all(claims)
        .await
        .into_iter()
        .filter(|claim| claim.as_ref().unwrap().is_none())
        .count();
    assert_eq!(winners, 1);
}

#[tokio::test]
async fn concurrent_updates_all_apply_one_version_apart() {
    let (database, _dir) = database().await;
    let ledger = Ledger::new(Arc::new(MemoryCache::new()), JobStore::new(database));
    let start = job(JobStatus::Running, 1);
    ledger.accepted(&start).await.unwrap();
    let updates = (0..20).map(|n| {
        let ledger = ledger.clone();
        let start = start.clone();
        tokio::spawn(async move {
            ledger
                .update(&start, |current| {
                    Some(Job {
                        progress: Some(n as f64 / 20.0),
                        ..current.clone()
                    })
                })
                .await
                .unwrap()
        })
    });
    for change in join_all(updates).await {
        assert!(matches!(change.unwrap(), Change::Applied(_)));
    }
    assert_eq!(ledger.get(start.id).await.unwrap().unwrap().version, 21);
}

#[tokio::test]
async fn lists_page_newest_first_per_tenant() {
    let (database, _dir) = database().await;
    let store = JobStore::new(database);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let job = job(JobStatus::Queued, 1);
        ids.push(job.id);
        store.write(job).await.unwrap();
    }
    store
        .write(Job {
            tenant: "globex".into(),
            ..job(JobStatus::Queued, 1)
        })
        .await
        .unwrap();
    let query = |before| JobQuery {
        job_type: None,
        status: None,
        before,
        limit: 3,
    };
    let first = store.list("acme", &query(None)).await.unwrap();
    let second = store.list("acme", &query(first.next_cursor)).await.unwrap();
    let listed: Vec<Uuid> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|j| j.id)
        .collect();
    ids.reverse();
    assert_eq!(listed, ids);
    assert!(second.next_cursor.is_none());
}

#[tokio::test]
async fn unacknowledged_messages_survive_a_restart_of_the_broker() {
    let (database, _dir) = database().await;
    let groups = Topology {
        groups: vec![("jobs".into(), "g".into())],
        kept: vec![],
    };
    let journal = Arc::new(SqlJournal::new(&database));
    let broker = MemoryBroker::durable(journal.clone(), &groups)
        .await
        .unwrap();
    let later = Utc::now() + chrono::Duration::milliseconds(300);
    broker
        .publish(
            "jobs",
            vec![
                Outgoing::now("a", "first"),
                Outgoing::now("b", "second"),
                Outgoing::at("c", "later", later),
            ],
        )
        .await
        .unwrap();
    let mut subscription = broker.subscribe("jobs", "g").await.unwrap();
    let mut taken = subscription.recv(1).await.unwrap();
    taken.remove(0).ack().await.unwrap();
    drop(subscription);
    drop(broker);
    // Acks are written in the background; a clean shutdown flushes them.
    journal.flush().await.unwrap();

    let restarted = MemoryBroker::durable(Arc::new(SqlJournal::new(&database)), &groups)
        .await
        .unwrap();
    let mut subscription = restarted.subscribe("jobs", "g").await.unwrap();
    let replayed = subscription.recv(10).await.unwrap();
    let payloads: Vec<&[u8]> = replayed.iter().map(|d| &d.payload[..]).collect();
    assert_eq!(payloads, [b"second".as_slice()]);
    let delayed = tokio::time::timeout(Duration::from_secs(2), subscription.recv(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&delayed[0].payload[..], b"later");
    assert!(Utc::now() >= later, "delivered before it was due");
}
