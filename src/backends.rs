//! Connects the broker, store and cache that the URLs name.

use std::sync::Arc;

use anyhow::{Context, bail};
use conveyor_events::{Broker, BrokerKind, MemoryBroker, Topics, Topology};
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
        let journal = Arc::new(SqlJournal::new(
            &journal_database(&args.database_url, &database).await?,
        ));
        let broker: Arc<dyn Broker> =
            Arc::new(MemoryBroker::durable(journal.clone(), &Topology::conveyor(&topics)).await?);
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
