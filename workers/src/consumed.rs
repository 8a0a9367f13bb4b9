//! Which queues a process consumes, and its subscriptions to them as queues appear.

use std::collections::BTreeSet;
use std::time::Duration;

use conveyor_events::{BrokerError, Lane, Queues, Subscription};
use conveyor_store::LiveCatalog;
use tokio::time::Interval;
use tokio_util::sync::CancellationToken;

/// How often the job types are looked at for a queue not consumed yet: with the catalog's own
/// refresh, a new queue is consumed within about a second of its first type's registration.
const NEW_QUEUES_EVERY: Duration = Duration::from_millis(500);

/// The queues a worker pool consumes (`conveyor worker --queues`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueChoice {
    /// Every queue some job type names or named (see `LiveCatalog::queues`), the default queue
    /// among them, as types come.
    Every,
    /// These queues only, whether or not a type names them yet.
    Only(Vec<String>),
}

impl QueueChoice {
    fn now(&self, catalog: &LiveCatalog) -> Vec<String> {
        match self {
            QueueChoice::Every => catalog.queues().into_iter().collect(),
            QueueChoice::Only(queues) => queues.clone(),
        }
    }
}

/// One lane of one queue, subscribed.
pub(crate) struct Subscribed {
    pub(crate) lane: Lane,
    pub(crate) subscription: Box<dyn Subscription>,
}

/// A consumer group's subscriptions, one per lane of each queue chosen.
pub(crate) struct Following {
    choice: QueueChoice,
    group: &'static str,
    consumed: BTreeSet<String>,
    looks: Interval,
}

impl Following {
    pub(crate) fn new(choice: QueueChoice, group: &'static str) -> Following {
        Following {
            choice,
            group,
            consumed: BTreeSet::new(),
            looks: tokio::time::interval(NEW_QUEUES_EVERY),
        }
    }

    /// At the next look, the subscriptions to queues new since the last; `None` once `stop`.
    /// A queue that cannot be subscribed to now is logged and tried again at the next look.
    pub(crate) async fn next_new(
        &mut self,
        queues: &Queues,
        catalog: &LiveCatalog,
        stop: &CancellationToken,
    ) -> Option<Vec<Subscribed>> {
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = self.looks.tick() => {}
        }
        match self.subscribe_new(queues, catalog).await {
            Ok(new) => Some(new),
            Err(error) => {
                tracing::warn!(%error, group = self.group, "Could not subscribe to a new queue; trying again shortly.");
                Some(Vec::new())
            }
        }
    }

    /// Subscribes to the queues chosen and not consumed yet, each declared first so that its
    /// other groups exist too. A queue that fails is tried again on the next call.
    pub(crate) async fn subscribe_new(
        &mut self,
        queues: &Queues,
        catalog: &LiveCatalog,
    ) -> Result<Vec<Subscribed>, BrokerError> {
        let mut subscribed = Vec::new();
        for queue in self.choice.now(catalog) {
            if self.consumed.contains(&queue) {
                continue;
            }
            queues.declare(&queue).await?;
            let mut lanes = Vec::new();
            for lane in Lane::ALL {
                let topic = queues.topics().lane(&queue, lane);
                let subscription = queues.broker().subscribe(&topic, self.group).await?;
                lanes.push(Subscribed { lane, subscription });
            }
            tracing::info!(queue, group = self.group, "Consuming a queue.");
            self.consumed.insert(queue);
            subscribed.extend(lanes);
        }
        Ok(subscribed)
    }
}
