//! What `/readyz` checks: every dependency a request may need.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use conveyor_events::{Broker, Lane, Topics};
use conveyor_store::{Database, Ledger};

use crate::metrics;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Readiness {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) database: Database,
    pub(crate) ledger: Ledger,
    pub(crate) topics: Topics,
}

impl Readiness {
    /// Each dependency's state: `"ok"` or why not.
    pub(crate) async fn check(&self) -> BTreeMap<&'static str, String> {
        let broker = async { self.broker.ready().await.map_err(|e| e.to_string()) };
        let database = async { self.database.ping().await.map_err(|e| e.to_string()) };
        let cache = async { self.ledger.cache().ping().await.map_err(|e| e.to_string()) };
        let (broker, database, cache) = tokio::join!(
            within("broker", broker),
            within("database", database),
            within("cache", cache)
        );
        BTreeMap::from([("broker", broker), ("database", database), ("cache", cache)])
    }

    /// Refreshes the gauges that are read at scrape time.
    pub(crate) fn sample(&self) {
        let lanes = Lane::ALL.map(|lane| self.topics.lane(lane));
        for topic in lanes.into_iter().chain([self.topics.dead_letter()]) {
            if let Some(depth) = self.broker.depth(&topic) {
                metrics::QUEUE_DEPTH
                    .with_label_values(&[&topic])
                    .set(depth as i64);
            }
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
