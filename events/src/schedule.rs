//! Delayed delivery for brokers that have none of their own (Kafka) or none that survives a
//! restart without a plugin (RabbitMQ): delayed messages wait in a durable [`Schedule`] (the
//! database) and are published when due, so a delay never blocks a partition or a queue.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::{Broker, BrokerError, Outgoing, Subscription, Topology};

/// Messages released in one go, at most.
const RELEASE_BATCH: usize = 512;
/// How long a claimed message stays hidden from other releasers; if the claimer dies before
/// publishing it, another process releases it after this.
const CLAIM_LEASE: Duration = Duration::from_secs(30);
/// How often due messages are looked for: a delayed message is late by at most about this much.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A message held until it is due.
#[derive(Debug, Clone)]
pub struct HeldMessage {
    pub id: i64,
    pub topic: String,
    pub key: String,
    pub payload: Bytes,
}

/// Durable storage for delayed messages, shared by every process of a deployment.
#[async_trait]
pub trait Schedule: Send + Sync + 'static {
    /// Keeps `messages` (each with a `deliver_at`) until due; returns once they are committed.
    async fn hold(&self, topic: &str, messages: Vec<Outgoing>) -> Result<(), BrokerError>;

    /// The (at most) `limit` messages due longest by `now`, in no particular order, each hidden
    /// from other claims for `lease` (after which it is due again unless forgotten).
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<HeldMessage>, BrokerError>;

    /// Forgets messages that have been published.
    async fn forget(&self, ids: Vec<i64>) -> Result<(), BrokerError>;
}

/// A broker whose delayed messages wait in a [`Schedule`]; everything else goes straight to the
/// broker. Run [`Scheduled::release_due`] in at least one process (the workers do).
#[derive(Clone)]
pub struct Scheduled {
    broker: Arc<dyn Broker>,
    schedule: Arc<dyn Schedule>,
}

impl Scheduled {
    pub fn new(broker: Arc<dyn Broker>, schedule: Arc<dyn Schedule>) -> Scheduled {
        Scheduled { broker, schedule }
    }

    /// Publishes messages as they fall due, until `shutdown`. Several processes may run this at
    /// once: claims keep them from publishing the same message twice, short of a crash between
    /// publish and forget (then it is published again: delivery is at least once).
    pub async fn release_due(&self, shutdown: CancellationToken) {
        loop {
            let released = match self.release_batch().await {
                Ok(released) => released,
                Err(error) => {
                    tracing::warn!(%error, "Could not release due messages; trying again shortly.");
                    0
                }
            };
            if released == RELEASE_BATCH {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }

    async fn release_batch(&self) -> Result<usize, BrokerError> {
        let due = self
            .schedule
            .claim_due(Utc::now(), RELEASE_BATCH, CLAIM_LEASE)
            .await?;
        let released = due.len();
        let mut by_topic: Vec<(String, Vec<HeldMessage>)> = Vec::new();
        for message in due {
            match by_topic
                .iter_mut()
                .find(|(topic, _)| *topic == message.topic)
            {
                Some((_, messages)) => messages.push(message),
                None => by_topic.push((message.topic.clone(), vec![message])),
            }
        }
        for (topic, messages) in by_topic {
            let ids = messages.iter().map(|message| message.id).collect();
            let outgoing = messages
                .into_iter()
                .map(|message| Outgoing::now(message.key, message.payload))
                .collect();
            self.broker.publish(&topic, outgoing).await?;
            self.schedule.forget(ids).await?;
        }
        Ok(released)
    }
}

#[async_trait]
impl Broker for Scheduled {
    async fn publish(&self, topic: &str, messages: Vec<Outgoing>) -> Result<(), BrokerError> {
        let now = Utc::now();
        let (held, due): (Vec<Outgoing>, Vec<Outgoing>) = messages
            .into_iter()
            .partition(|message| message.deliver_at.is_some_and(|at| at > now));
        let hold = async {
            if held.is_empty() {
                Ok(())
            } else {
                self.schedule.hold(topic, held).await
            }
        };
        let publish = async {
            if due.is_empty() {
                Ok(())
            } else {
                self.broker.publish(topic, due).await
            }
        };
        let (held, published) = tokio::join!(hold, publish);
        held.and(published)
    }

    async fn declare(&self, topology: &Topology) -> Result<(), BrokerError> {
        self.broker.declare(topology).await
    }

    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscription>, BrokerError> {
        self.broker.subscribe(topic, group).await
    }

    async fn ready(&self) -> Result<(), BrokerError> {
        self.broker.ready().await
    }

    fn depth(&self, topic: &str) -> Option<u64> {
        self.broker.depth(topic)
    }
}
