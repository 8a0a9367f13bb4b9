//! The store and ledger on a real SQLite file and PostgreSQL schema: versions never go backwards, terminal states are
//! final, and the broker journal survives a restart.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use conveyor_events::{Broker, HeldMessage, MemoryBroker, Outgoing, Schedule, Topology};
use conveyor_schemas::lifecycle::Event;
use conveyor_schemas::{Job, JobStatus, JobTypeInfo};
use conveyor_store::{
    Cache, Change, Database, IdempotencyClaim, JobQuery, JobStore, JobTypeStore, Ledger,
    LiveCatalog, MemoryCache, SqlJournal, SqlSchedule,
};
use futures_util::future::join_all;
use serde_json::json;
use tempfile::TempDir;
use uuid::Uuid;

/// A migrated database of its own for one test: a SQLite file, or a fresh PostgreSQL schema.
struct TestDb {
    database: Database,
    _dir: Option<TempDir>,
}

async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let database = Database::connect(&url, None, None).await.unwrap();
    database.migrate().await.unwrap();
    TestDb {
        database,
        _dir: Some(dir),
    }
}

async fn postgres() -> TestDb {
    let url = std::env::var("CONVEYOR_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("t_{}", Uuid::now_v7().simple());
    let database = Database::connect(&url, None, Some(&schema)).await.unwrap();
    database.migrate().await.unwrap();
    TestDb {
        database,
        _dir: None,
    }
}

/// Runs a test on SQLite and on PostgreSQL.
macro_rules! on_both_databases {
    ($($test:ident),* $(,)?) => {
        $(mod $test {
            #[tokio::test]
            async fn sqlite() {
                super::$test(super::sqlite().await).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$test(super::postgres().await).await;
            }
        })*
    };
}

on_both_databases!(
    the_store_keeps_the_newest_version_whatever_the_write_order,
    a_terminal_job_in_the_store_is_final,
    concurrent_updates_all_apply_one_version_apart,
    lists_page_newest_first_per_tenant,
    unacknowledged_messages_survive_a_restart_of_the_broker,
    delayed_messages_are_held_until_due_and_claimed_once,
    pruning_deletes_jobs_that_ended_before_the_cutoff_oldest_first_in_bounded_batches,
    a_queue_stays_known_after_its_last_type_moves_away_or_goes,
);

async fn a_queue_stays_known_after_its_last_type_moves_away_or_goes(db: TestDb) {
    let store = JobTypeStore::new(db.database.clone());
    let on = |queue: &str| {
        let mut info = JobTypeInfo::compiled("mailer", "", json!({}));
        info.queue = queue.into();
        info
    };
    store.put(&on("mail")).await.unwrap();
    store.put(&on("mail-v2")).await.unwrap();
    let catalog = LiveCatalog::load(store.clone()).await.unwrap();
    assert_eq!(catalog.current().queue_of("mailer"), "mail-v2");
    let queues: Vec<String> = catalog.queues().into_iter().collect();
    assert_eq!(
        queues,
        ["default", "mail", "mail-v2"],
        "commands may still wait on `mail`"
    );
    assert!(store.delete("mailer").await.unwrap());
    catalog.refresh().await.unwrap();
    assert_eq!(catalog.queues().len(), 3, "and on `mail-v2`");
}

fn job(status: JobStatus, version: u64) -> Job {
    Job {
        status,
        version,
        ..Job::fixture()
    }
}

async fn the_store_keeps_the_newest_version_whatever_the_write_order(db: TestDb) {
    let database = db.database;
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

async fn pruning_deletes_jobs_that_ended_before_the_cutoff_oldest_first_in_bounded_batches(
    db: TestDb,
) {
    let store = JobStore::new(db.database);
    let ended_ago = |status, hours| {
        let at = Utc::now() - chrono::Duration::hours(hours);
        Job {
            updated_at: at,
            created_at: at,
            ..job(status, 2)
        }
    };
    let old = [
        ended_ago(JobStatus::Succeeded, 50),
        ended_ago(JobStatus::Failed, 49),
        ended_ago(JobStatus::Cancelled, 48),
    ];
    // Unfinished however old, or finished after the cutoff: kept.
    let kept = [
        ended_ago(JobStatus::Running, 100),
        ended_ago(JobStatus::Scheduled, 100),
        ended_ago(JobStatus::Succeeded, 1),
    ];
    for job in old.iter().chain(&kept) {
        store.write(job.clone()).await.unwrap();
    }
    let cutoff = Utc::now() - chrono::Duration::hours(24);
    assert_eq!(store.prune_finished(cutoff, 2).await.unwrap(), 2);
    assert!(
        store.get(old[0].id).await.unwrap().is_none(),
        "oldest first"
    );
    assert!(store.get(old[1].id).await.unwrap().is_none());
    assert!(store.get(old[2].id).await.unwrap().is_some());
    assert_eq!(store.prune_finished(cutoff, 2).await.unwrap(), 1);
    assert_eq!(store.prune_finished(cutoff, 2).await.unwrap(), 0);
    for job in &kept {
        assert!(
            store.get(job.id).await.unwrap().is_some(),
            "{:?} was pruned",
            job.status
        );
    }
}

/// The names of the jobs table's partitions, sorted.
async fn partitions(database: &Database) -> Vec<String> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let rows = database
        .write
        .query_all(Statement::from_string(
            DbBackend::Postgres,
            "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'jobs'::regclass ORDER BY 1",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.try_get::<String>("", "name").unwrap())
        .collect()
}

/// A UUIDv7 made at `at`.
fn id_made_at(at: chrono::DateTime<Utc>) -> Uuid {
    let at = uuid::Timestamp::from_unix(
        uuid::NoContext,
        at.timestamp() as u64,
        at.timestamp_subsec_nanos(),
    );
    Uuid::new_v7(at)
}

/// PostgreSQL keeps a partition per day, made a week ahead; a day whose jobs all ended before the
/// cutoff is dropped whole, and one with a job unfinished (or ended after it) stays. (The cutoff
/// lies ten days ahead here, standing for a retention period that has passed.)
#[tokio::test]
async fn postgres_drops_a_days_partition_once_all_its_jobs_ended_before_the_cutoff() {
    let db = postgres().await;
    let database = db.database.clone();
    let store = JobStore::new(db.database);
    let today = Utc::now().date_naive();
    assert_eq!(
        partitions(&database).await,
        ["jobs_before_partitions", "jobs_default"],
        "the migration partitions the table"
    );
    // Today is the migration's own partition's; the seven days after it get one each.
    assert_eq!(store.make_day_partitions(today).await.unwrap(), 7);
    assert_eq!(store.make_day_partitions(today).await.unwrap(), 0);
    let tomorrow = today.succ_opt().unwrap();
    let days = partitions(&database).await;
    assert_eq!(days.len(), 9);
    let tomorrows = format!("jobs_p{}", tomorrow.format("%Y%m%d"));
    assert!(days.contains(&tomorrows), "{days:?}");

    let ended_today = job(JobStatus::Succeeded, 2);
    let noon_tomorrow = tomorrow.and_hms_opt(12, 0, 0).unwrap().and_utc();
    let ended_tomorrow = Job {
        id: id_made_at(noon_tomorrow),
        ..job(JobStatus::Failed, 2)
    };
    let running_tomorrow = Job {
        id: id_made_at(noon_tomorrow + chrono::Duration::minutes(1)),
        ..job(JobStatus::Running, 2)
    };
    for job in [&ended_today, &ended_tomorrow, &running_tomorrow] {
        store.write(job.clone()).await.unwrap();
    }
    let cutoff = Utc::now() + chrono::Duration::days(10);
    // Today's job and the seven empty days after tomorrow's go; tomorrow's stays for its running job.
    assert_eq!(store.drop_ended_partitions(cutoff).await.unwrap(), 1);
    assert_eq!(
        partitions(&database).await,
        ["jobs_default", tomorrows.as_str()]
    );
    assert!(store.get(ended_today.id).await.unwrap().is_none());
    assert!(store.get(running_tomorrow.id).await.unwrap().is_some());
    // Its ended job goes row by row.
    assert_eq!(store.prune_finished(cutoff, 10).await.unwrap(), 1);
    assert!(store.get(ended_tomorrow.id).await.unwrap().is_none());
}

async fn a_terminal_job_in_the_store_is_final(db: TestDb) {
    let database = db.database;
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

async fn concurrent_updates_all_apply_one_version_apart(db: TestDb) {
    let database = db.database;
    let ledger = Ledger::new(Arc::new(MemoryCache::new()), JobStore::new(database));
    let start = job(JobStatus::Running, 1);
    ledger.accepted(&start).await.unwrap();
    let updates = (0..20).map(|n| {
        let ledger = ledger.clone();
        let start = start.clone();
        tokio::spawn(async move {
            let progress = Event::Progress {
                attempt: start.attempts,
                fraction: n as f64 / 20.0,
            };
            ledger.apply(&start, &progress).await.unwrap()
        })
    });
    for change in join_all(updates).await {
        assert!(matches!(change.unwrap(), Change::Applied(_)));
    }
    assert_eq!(ledger.get(start.id).await.unwrap().unwrap().version, 21);
}

async fn lists_page_newest_first_per_tenant(db: TestDb) {
    let database = db.database;
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

async fn unacknowledged_messages_survive_a_restart_of_the_broker(db: TestDb) {
    let database = db.database;
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

async fn delayed_messages_are_held_until_due_and_claimed_once(db: TestDb) {
    let schedule = SqlSchedule::new(&db.database);
    let now = Utc::now();
    let soon = now + chrono::Duration::milliseconds(200);
    let later = now + chrono::Duration::hours(1);
    schedule
        .hold(
            "jobs",
            vec![
                Outgoing::at("a", "soon", soon),
                Outgoing::at("b", "later", later),
            ],
        )
        .await
        .unwrap();
    let lease = Duration::from_secs(30);
    assert!(
        schedule.claim_due(now, 10, lease).await.unwrap().is_empty(),
        "nothing is due early"
    );

    // Claimers racing for the due message: exactly one gets it.
    let at = soon + chrono::Duration::milliseconds(1);
    let claims = join_all((0..8).map(|_| schedule.claim_due(at, 10, lease))).await;
    let claimed: Vec<HeldMessage> = claims.into_iter().flat_map(Result::unwrap).collect();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].key.as_str(), &claimed[0].payload[..]),
        ("a", b"soon".as_slice())
    );
    assert_eq!(claimed[0].topic, "jobs");

    // A claim not forgotten (its claimer died) comes due again after the lease.
    let after_lease = at + chrono::Duration::from_std(lease).unwrap();
    let again = schedule.claim_due(after_lease, 10, lease).await.unwrap();
    assert_eq!(again.len(), 1);
    schedule.forget(vec![again[0].id]).await.unwrap();
    let much_later = after_lease + chrono::Duration::from_std(lease).unwrap();
    let rest = schedule.claim_due(much_later, 10, lease).await.unwrap();
    assert!(rest.is_empty(), "forgotten messages stay forgotten");
    let when_due = later + chrono::Duration::seconds(1);
    assert_eq!(
        schedule.claim_due(when_due, 10, lease).await.unwrap()[0].key,
        "b"
    );
}

/// PostgreSQL's `jsonb` holds no NUL: a snapshot with one is refused, alone, and the group commit
/// it shared goes through for every other job in it.
#[tokio::test]
async fn a_snapshot_the_database_refuses_fails_alone() {
    let store = JobStore::new(postgres().await.database);
    let mut jobs: Vec<Job> = (0..32).map(|_| job(JobStatus::Queued, 1)).collect();
    jobs[7].payload = json!({"a": "x\u{0}y"});
    let writes = jobs.iter().map(|job| {
        let store = store.clone();
        let job = job.clone();
        tokio::spawn(async move { store.write(job).await })
    });
    let results: Vec<_> = join_all(writes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for (n, (job, result)) in jobs.iter().zip(&results).enumerate() {
        let stored = store.get(job.id).await.unwrap();
        if n == 7 {
            assert!(
                matches!(result, Err(conveyor_store::StoreError::Refused(_))),
                "{result:?}"
            );
            assert!(stored.is_none());
        } else {
            assert!(result.is_ok(), "job {n}: {result:?}");
            assert!(stored.is_some(), "job {n} was not stored");
        }
    }
}
