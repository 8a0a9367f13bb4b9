//! Connects the broker, store and cache that the URLs name, waiting for any that is not up yet.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use conveyor_amqp::{AmqpBroker, AmqpSettings, QueueType};
use conveyor_api::JwksError;
use conveyor_events::{
    Broker, BrokerError, BrokerKind, MemoryBroker, Queues, Scheduled, Topics, Topology,
};
use conveyor_kafka::{KafkaBroker, KafkaSettings};
use conveyor_redis::RedisCache;
use conveyor_schemas::{Backoff, JobTypeInfo};
use conveyor_store::{
    Cache, CacheKind, Database, JobStore, JobTypeStore, Ledger, LiveCatalog, MemoryCache,
    MemoryRateLimiter, RateLimiter, SqlJournal, SqlSchedule, StoreError,
};

use crate::config::{AmqpQueueType, BackendArgs};

/// First pause before connecting again to a dependency that is down; it doubles up to the max.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Backends {
    /// The broker, by queue.
    pub queues: Arc<Queues>,
    pub ledger: Ledger,
    pub database: Database,
    /// The job types, as the store has them (refreshed by [`LiveCatalog::follow`]).
    pub catalog: Arc<LiveCatalog>,
    /// Between attempts of jobs whose type names no backoff (`CONVEYOR_RETRY_*`).
    pub backoff: Backoff,
    /// Rate limits: in-process, or shared through Redis when that is the cache.
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Where delayed messages wait when the broker has no durable delays of its own; some
    /// process must release them (the workers do).
    pub schedule: Option<Scheduled>,
    /// The in-process broker's journal, when that is the broker.
    journal: Option<Arc<SqlJournal>>,
}

/// Whether the process runs the API and the workers together (so an in-process broker can serve
/// both) or only one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Both,
    ApiOnly,
    WorkerOnly,
}

impl Backends {
    /// Connects everything `args` names. `prefetch` is how many messages a subscription may hold
    /// unacknowledged (the worker concurrency).
    pub async fn connect(
        args: &BackendArgs,
        role: Role,
        prefetch: u16,
    ) -> anyhow::Result<Backends> {
        let broker_kind = BrokerKind::parse(&args.broker_url)?;
        let cache_kind = CacheKind::parse(&args.cache_url)?;
        // Settings that cannot work are refused before anything is opened or created.
        if role != Role::Both {
            if broker_kind == BrokerKind::Memory {
                bail!(
                    "CONVEYOR_BROKER_URL: memory:// lives inside one process, so it only serves \
                     `conveyor dev`; separate api and worker processes need kafka:// or amqp://"
                );
            }
            if cache_kind == CacheKind::Memory {
                bail!(
                    "CONVEYOR_CACHE_URL: memory:// lives inside one process, so it only serves \
                     `conveyor dev`; separate api and worker processes share job state through \
                     redis://"
                );
            }
        }
        let database = patiently("database", || async {
            let database = Database::connect(
                &args.database_url,
                args.database_read_url.as_deref(),
                args.database_schema.as_deref(),
            )
            .await?;
            if role == Role::Both {
                database.migrate().await?;
            } else {
                database.check_schema().await?;
            }
            Ok::<_, StoreError>(database)
        })
        .await?;
        let catalog = job_types(args, &database).await?;
        let backoff = Backoff {
            base: Duration::from_millis(args.retry_base_ms),
            max: Duration::from_millis(args.retry_max_ms),
        };
        let topics = Topics::new(args.topic_prefix.clone());
        let known: Vec<String> = catalog.queues().into_iter().collect();
        let topology = Topology::conveyor(&topics, known.iter().map(String::as_str));
        let (cache, rate_limiter): (Arc<dyn Cache>, Arc<dyn RateLimiter>) = match &cache_kind {
            CacheKind::Memory => (
                Arc::new(MemoryCache::new()),
                Arc::new(MemoryRateLimiter::new()),
            ),
            CacheKind::Redis { url } => {
                let redis =
                    patiently("cache", || RedisCache::connect(url, &args.topic_prefix)).await?;
                let rate_limiter = Arc::new(redis.rate_limiter());
                (Arc::new(redis), rate_limiter)
            }
        };
        let ledger = Ledger::new(cache, JobStore::new(database.clone()));
        let external: Arc<dyn Broker> = match broker_kind {
            BrokerKind::Memory => {
                let journal = Arc::new(SqlJournal::new(
                    &journal_database(&args.database_url, &database).await?,
                ));
                let broker = MemoryBroker::durable(journal.clone(), &topology).await?;
                return Ok(Backends {
                    queues: Arc::new(Queues::new(Arc::new(broker), topics, known)),
                    ledger,
                    database,
                    catalog,
                    backoff,
                    rate_limiter,
                    schedule: None,
                    journal: Some(journal),
                });
            }
            BrokerKind::Kafka { bootstrap } => {
                let settings = || KafkaSettings {
                    bootstrap: bootstrap.clone(),
                    partitions: args.kafka_partitions,
                    replication: args.kafka_replication,
                    message_timeout: Duration::from_millis(args.publish_timeout_ms),
                };
                Arc::new(patiently("broker", || KafkaBroker::connect(settings(), &topology)).await?)
            }
            BrokerKind::Amqp { url } => {
                let settings = || AmqpSettings {
                    url: url.clone(),
                    prefetch,
                    queue_type: match args.amqp_queue_type {
                        AmqpQueueType::Quorum => QueueType::Quorum,
                        AmqpQueueType::Classic => QueueType::Classic,
                    },
                };
                Arc::new(patiently("broker", || AmqpBroker::connect(settings(), &topology)).await?)
            }
        };
        // Kafka and RabbitMQ: delayed messages wait in the database, not in the broker.
        let scheduled = Scheduled::new(external, Arc::new(SqlSchedule::new(&database)));
        Ok(Backends {
            queues: Arc::new(Queues::new(Arc::new(scheduled.clone()), topics, known)),
            ledger,
            database,
            catalog,
            backoff,
            rate_limiter,
            schedule: Some(scheduled),
            journal: None,
        })
    }

    /// Commits every write still queued, so that a clean shutdown leaves nothing to replay.
    pub async fn flush(&self) -> anyhow::Result<()> {
        if let Some(journal) = &self.journal {
            journal
                .flush()
                .await
                .context("Failed to flush the broker journal")?;
        }
        self.ledger
            .store()
            .flush()
            .await
            .context("Failed to flush job writes")
    }
}

/// The job types file's types registered, then the catalog of every type the store holds.
async fn job_types(args: &BackendArgs, database: &Database) -> anyhow::Result<Arc<LiveCatalog>> {
    let store = JobTypeStore::new(database.clone());
    if let Some(path) = &args.job_types_file {
        let types = crate::job_types_file::read(path)?;
        register(&store, &types).await?;
        tracing::info!(types = types.len(), file = %path.display(), "Job types registered from CONVEYOR_JOB_TYPES_FILE.");
    }
    LiveCatalog::load(store)
        .await
        .context("Failed to read the registered job types")
}

/// Puts `types` in the store, each registered or replaced.
pub(crate) async fn register(store: &JobTypeStore, types: &[JobTypeInfo]) -> anyhow::Result<()> {
    for info in types {
        store
            .put(info)
            .await
            .with_context(|| format!("Failed to register job type `{}`", info.name))?;
    }
    Ok(())
}

/// Errors worth waiting out (a dependency that is down or starting) rather than giving up on.
pub(crate) trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for StoreError {
    fn is_transient(&self) -> bool {
        matches!(self, StoreError::Database(_) | StoreError::Cache(_))
    }
}

impl Transient for BrokerError {
    fn is_transient(&self) -> bool {
        matches!(self, BrokerError::Unavailable(_))
    }
}

impl Transient for JwksError {
    fn is_transient(&self) -> bool {
        matches!(self, JwksError::Unreachable(_))
    }
}

/// Runs `connect` until it succeeds, so that a process started before its dependency waits for it
/// (saying so) instead of crash-looping; errors that waiting cannot cure end the start.
pub(crate) async fn patiently<T, E, F>(
    what: &str,
    mut connect: impl FnMut() -> F,
) -> anyhow::Result<T>
where
    F: Future<Output = Result<T, E>>,
    E: Transient + Display + std::error::Error + Send + Sync + 'static,
{
    let mut pause = FIRST_RETRY;
    let mut waited = false;
    loop {
        match connect().await {
            Ok(connected) => {
                if waited {
                    tracing::info!("The {what} is reachable; carrying on.");
                }
                return Ok(connected);
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(
                    %error,
                    retry_in = ?pause,
                    "The {what} is not reachable yet; waiting for it."
                );
                waited = true;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY);
            }
            Err(error) => return Err(error).with_context(|| format!("Cannot use the {what}")),
        }
    }
}

/// Where the in-process broker keeps its journal: beside a SQLite database file, in a file of its
/// own (`conveyor.db` → `conveyor-broker.db`), so that submissions commit without queueing behind
/// the job writes of SQLite's single writer; in the database itself otherwise.
pub fn journal_url(database_url: &str) -> Option<String> {
    let rest = database_url.strip_prefix("sqlite://")?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    let journal = match path.strip_suffix(".db") {
        Some(stem) => format!("{stem}-broker.db"),
        None => format!("{path}-broker"),
    };
    Some(match query {
        "" => format!("sqlite://{journal}"),
        query => format!("sqlite://{journal}?{query}"),
    })
}

async fn journal_database(database_url: &str, database: &Database) -> anyhow::Result<Database> {
    let Some(url) = journal_url(database_url) else {
        return Ok(database.clone());
    };
    let journal = Database::connect(&url, None, None)
        .await
        .context("Failed to open the broker journal")?;
    journal
        .migrate()
        .await
        .context("Failed to migrate the broker journal")?;
    Ok(journal)
}
#[cfg(test)]
mod tests {
    use super::journal_url;

    #[test]
    fn a_sqlite_file_gets_a_journal_file_beside_it() {
        assert_eq!(
            journal_url("sqlite://conveyor.db?mode=rwc").as_deref(),
            Some("sqlite://conveyor-broker.db?mode=rwc")
        );
        assert_eq!(
            journal_url("sqlite:///var/lib/conveyor/data").as_deref(),
            Some("sqlite:///var/lib/conveyor/data-broker")
        );
        assert_eq!(journal_url("sqlite::memory:"), None);
        assert_eq!(journal_url("postgres://localhost/conveyor"), None);
    }
}
