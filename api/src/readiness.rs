//! What `/readyz` checks: every dependency a request may need.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use conveyor_events::{Lane, Queues};
use conveyor_store::{Database, Ledger, LiveCatalog};

use crate::{ApiDependencies, metrics};

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Readiness {
    queues: Arc<Queues>,
    database: Database,
    ledger: Ledger,
    catalog: Arc<LiveCatalog>,
}

impl Readiness {
    pub(crate) fn new(dependencies: &ApiDependencies) -> Readiness {
        Readiness {
            queues: dependencies.queues.clone(),
            database: dependencies.database.clone(),
            ledger: dependencies.ledger.clone(),
            catalog: dependencies.catalog.clone(),
        }
    }

    /// Each dependency's state: `"ok"` or why not.
    pub(crate) async fn check(&self) -> BTreeMap<&'static str, String> {
        let broker = async {
            self.queues
                .broker()
                .ready()
                .await
                .map_err(|e| e.to_string())
        };
        let database = async { self.database.ping().await.map_err(|e| e.to_string()) };
        let cache = async { self.ledger.cache().ping().await.map_err(|e| e.to_string()) };
        let (broker, database, cache) = tokio::join!(
            within("broker", broker),
            within("database", database),
            within("cache", cache)
        );
        BTreeMap::from([("broker", broker), ("database", database), ("cache", cache)])
    }

    /// Refreshes the gauges that are read at scrape time: each topic's depth, and each queue's
    /// (every queue a type names or named, and any other this process declared).
    pub(crate) fn sample(&self) {
        let (broker, topics) = (self.queues.broker(), self.queues.topics());
        let mut queues = self.catalog.queues();
        queues.extend(self.queues.declared());
        for queue in &queues {
            let mut waiting = None;
            for lane in Lane::ALL {
                let topic = topics.lane(queue, lane);
                if let Some(depth) = broker.depth(&topic) {
                    metrics::QUEUE_DEPTH
                        .with_label_values(&[&topic])
                        .set(depth as i64);
                    *waiting.get_or_insert(0) += depth;
                }
            }
            if let Some(waiting) = waiting {
                metrics::QUEUE_WAITING
                    .with_label_values(&[queue])
                    .set(waiting as i64);
            }
        }
        let dead_letter = topics.dead_letter();
        if let Some(depth) = broker.depth(&dead_letter) {
            metrics::QUEUE_DEPTH
                .with_label_values(&[&dead_letter])
                .set(depth as i64);
        }
        metrics::WATCHED_JOBS.set(self.ledger.watched() as i64);
    }
}

/// `"ok"`, or why not in words that name no host, user or schema: the cause is logged instead,
/// since `/readyz` answers anyone.
async fn within(dependency: &str, check: impl Future<Output = Result<(), String>>) -> String {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => "ok".into(),
        Ok(Err(cause)) => {
            tracing::warn!(dependency, %cause, "A readiness check failed.");
            "unavailable".into()
        }
        Err(_) => format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
    }
}
