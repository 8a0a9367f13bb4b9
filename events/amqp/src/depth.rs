//! Queue depths, read in the background: `Broker::depth` is called where nothing may wait
//! (metrics sampling), and RabbitMQ answers a depth only to a (passive) queue declaration.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use conveyor_events::BrokerError;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use tokio::time::MissedTickBehavior;

use crate::connection::Link;
use crate::topology::{Declaration, Declared};
use crate::unavailable;

/// How often depths are read: how stale a depth may be.
const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Each topic's depth, as last read.
#[derive(Default)]
pub(crate) struct Depths {
    known: RwLock<HashMap<String, u64>>,
}

impl Depths {
    /// Reads the depths of the topics declared every [`REFRESH_INTERVAL`], until the
    /// returned `Depths` is dropped.
    pub(crate) fn watch(link: Arc<Link>, declared: Arc<Declared>) -> Arc<Depths> {
        let depths = Arc::new(Depths::default());
        let watched = Arc::downgrade(&depths);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(REFRESH_INTERVAL);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(depths) = Weak::upgrade(&watched) else {
                    return;
                };
                let read = read(&link, &declared.current()).await;
                let mut known = depths.known.write().unwrap_or_else(|e| e.into_inner());
                match read {
                    Ok(read) => *known = read,
                    Err(error) => {
                        tracing::debug!(%error, "Could not read the RabbitMQ queue depths.");
                        // Unknown rather than stale.
                        known.clear();
                    }
                }
            }
        });
        depths
    }

    pub(crate) fn get(&self, topic: &str) -> Option<u64> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        known.get(topic).copied()
    }
}

/// Each topic's depth: the ready messages of its fullest queue (its slowest group).
async fn read(link: &Link, declaration: &Declaration) -> Result<HashMap<String, u64>, BrokerError> {
    let channel = link.channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let mut depths = HashMap::new();
    for (topic, queues) in declaration.queues_by_topic() {
        let mut deepest = 0;
        for queue in queues {
            let declared = channel
                .queue_declare(queue.clone(), passive, FieldTable::default())
                .await
                .map_err(|error| {
                    unavailable(format!("could not read the depth of {queue}: {error}"))
                })?;
            deepest = deepest.max(u64::from(declared.message_count()));
        }
        depths.insert(topic.to_owned(), deepest);
    }
    Ok(depths)
}
