use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use crate::{Broker, BrokerError, Lane, Outgoing, Topics, Topology};

/// The deployment's queues, each a pair of topics (one per [`Lane`]) on the broker. Queues come
/// and go with job types, so a queue is declared (its topics and groups created) the first time
/// this process publishes to it or consumes it: none of its groups can then miss a message.
pub struct Queues {
    broker: Arc<dyn Broker>,
    topics: Topics,
    declared: RwLock<BTreeSet<String>>,
}

impl Queues {
    /// Over `broker`, which has `declared` declared already (at connect).
    pub fn new(
        broker: Arc<dyn Broker>,
        topics: Topics,
        declared: impl IntoIterator<Item = String>,
    ) -> Queues {
        Queues {
            broker,
            topics,
            declared: RwLock::new(declared.into_iter().collect()),
        }
    }

    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Declares `queue` unless this process did already.
    pub async fn declare(&self, queue: &str) -> Result<(), BrokerError> {
        if self.declared.read().unwrap().contains(queue) {
            return Ok(());
        }
        self.broker
            .declare(&Topology::of_queue(&self.topics, queue))
            .await?;
        self.declared.write().unwrap().insert(queue.to_owned());
        tracing::info!(queue, "Declared a queue.");
        Ok(())
    }

    /// The queues declared by this process so far.
    pub fn declared(&self) -> Vec<String> {
        self.declared.read().unwrap().iter().cloned().collect()
    }

    /// Publishes `messages` on `lane` of `queue`, declaring the queue first if it is new here.
    pub async fn publish(
        &self,
        queue: &str,
        lane: Lane,
        messages: Vec<Outgoing>,
    ) -> Result<(), BrokerError> {
        self.declare(queue).await?;
        self.broker
            .publish(&self.topics.lane(queue, lane), messages)
            .await
    }
}
