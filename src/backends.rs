//! Connects the broker, store and cache that the URLs name.

use std::sync::Arc;

use anyhow::{Context, bail};
use conveyor_events::{Broker, BrokerKind, MemoryBroker, Topics};
use conveyor_store::{Cache, CacheKind, Database, JobStore, Ledger, MemoryCache, SqlJournal};

use crate::config::BackendArgs;

#[derive(Clone)]
pub struct Backends {
    pub broker: Arc<dyn Broker>,
    pub ledger: Ledger,
    pub database: Database,
    pub topics: Topics,
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
    pub async fn connect(args: &BackendArgs, role: Role) -> anyhow::Result<Backends> {
        let broker_kind = BrokerKind::parse(&args.broker_url)?;
        let cache_kind = CacheKind::parse(&args.cache_url)?;
        // Settings this build cannot serve are refused before anything is opened or created.
        match (&broker_kind, role) {
            (BrokerKind::Memory, Role::ApiOnly | Role::WorkerOnly) => bail!(
                "CONVEYOR_BROKER_URL: memory:// lives inside one process, so it only serves \
                 `conveyor dev`; separate api and worker processes need kafka:// or amqp://"
            ),
            (BrokerKind::Kafka { .. } | BrokerKind::Amqp { .. }, _) => bail!(
                "CONVEYOR_BROKER_URL: this build has no Kafka or RabbitMQ adapter yet; use memory://"
            ),
            (BrokerKind::Memory, Role::Both) => {}
        }
        if let CacheKind::Redis { .. } = cache_kind {
            bail!("CONVEYOR_CACHE_URL: this build has no Redis cache yet; use memory://");
        }
        let database = Database::connect(&args.database_url, args.database_read_url.as_deref())
            .await
            .context("Failed to open the database")?;
        if role == Role::Both {
            database
                .migrate()
                .await
                .context("Failed to migrate the database")?;
        } else {
            database.check_schema().await?;
        }
        let topics = Topics::new(args.topic_prefix.clone());
        let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new());
        let journal = Arc::new(SqlJournal::new(&database));
        let (jobs, dead_letter) = (topics.jobs(), topics.dead_letter());
        // Declared before anything is published, so that no group misses a message.
        let groups = [
            (jobs.as_str(), Topics::WORKERS),
            (jobs.as_str(), Topics::RECORDER),
            (dead_letter.as_str(), Topics::DEAD_LETTERS),
        ];
        let broker: Arc<dyn Broker> =
            Arc::new(MemoryBroker::durable(journal.clone(), &groups).await?);
        let ledger = Ledger::new(cache, JobStore::new(database.clone()));
        Ok(Backends {
            broker,
            ledger,
            database,
            topics,
            journal: Some(journal),
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
