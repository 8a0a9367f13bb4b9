//! The RabbitMQ adapter of Conveyor's broker port.
//!
//! Each topic is a durable fanout exchange; each consumer group a durable queue
//! `<topic>.<group>` bound to it (quorum by default), so every group gets its own copy of every
//! message; each kept topic (dead letters) a durable queue of the topic's name, so its messages
//! stay with nobody consuming. Group queues dead-letter to the first kept topic. Quorum queues
//! get a delivery limit out of reach: RabbitMQ 4 would otherwise drop or dead-letter a message
//! after 20 deliveries, and Conveyor's workers, which count attempts themselves, hand a message
//! back as often as they must (see `topology.rs`).
//!
//! Messages are persistent and published with confirms: `publish` returns once RabbitMQ has
//! confirmed every message, and a nack, a returned (unroutable) message or a lost connection is
//! [`BrokerError::Unavailable`]. Deliveries are acknowledged by hand; a consumer holds at most
//! `prefetch` of them. Delays are not RabbitMQ's business: [`conveyor_events::Scheduled`] holds
//! delayed messages in the database, so they survive a broker restart.
//!
//! Publishing and consuming use two connections, as RabbitMQ advises: when a resource alarm
//! blocks publishers, consumers can still acknowledge and drain the queues. A connection found
//! closed is opened again (and the topology declared again) by the next call that needs it.

mod connection;
mod consumer;
mod depth;
mod publisher;
mod topology;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use conveyor_events::{Broker, BrokerError, Outgoing, Subscription, Topology};
use lapin::uri::AMQPUri;

use crate::connection::Link;
use crate::consumer::AmqpSubscription;
use crate::depth::Depths;
use crate::publisher::Publisher;
use crate::topology::Declared;

/// How to reach RabbitMQ and what to declare there.
#[derive(Clone)]
pub struct AmqpSettings {
    /// `amqp://user:password@host:5672/%2f` (or `amqps://`); never logged.
    pub url: String,
    /// Unacknowledged deliveries a subscription may hold: the consumer's concurrency.
    pub prefetch: u16,
    /// The type of the queues Conveyor declares.
    pub queue_type: QueueType,
}

impl fmt::Debug for AmqpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpSettings")
            .field("url", &"<redacted>")
            .field("prefetch", &self.prefetch)
            .field("queue_type", &self.queue_type)
            .finish()
    }
}

/// The RabbitMQ queue type of Conveyor's queues. A queue keeps the type it was first declared
/// with: declaring it again with the other type is refused (delete the queue to change it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QueueType {
    /// Replicated (Raft) queues: the durable choice, and RabbitMQ's recommendation.
    #[default]
    Quorum,
    /// Single-node queues, for brokers or plans without quorum queues.
    Classic,
}

/// The RabbitMQ broker. Clones share the connections.
#[derive(Clone)]
pub struct AmqpBroker {
    shared: Arc<Shared>,
}

struct Shared {
    publisher: Publisher,
    consuming: Arc<Link>,
    prefetch: u16,
    depths: Arc<Depths>,
}

impl AmqpBroker {
    /// Connects and declares `topology` (idempotently: every process declares the same one).
    /// Fails when RabbitMQ cannot be reached or refuses the topology, e.g. because a queue
    /// exists with another type.
    pub async fn connect(
        settings: AmqpSettings,
        topology: &Topology,
    ) -> Result<AmqpBroker, BrokerError> {
        if settings.prefetch == 0 {
            // AMQP reads 0 as "no limit": a consumer would take the whole queue.
            return Err(BrokerError::Config(
                "rabbitmq: the prefetch must be at least 1".into(),
            ));
        }
        let uri: AMQPUri = settings.url.parse().map_err(|error| {
            BrokerError::Config(format!(
                "rabbitmq: the broker URL is not an AMQP URI: {error}"
            ))
        })?;
        let declared = Arc::new(Declared::new(topology, settings.queue_type)?);
        let publishing = Arc::new(Link::new(uri.clone(), "publisher", declared.clone()));
        let consuming = Arc::new(Link::new(uri, "consumer", declared.clone()));
        publishing.open().await?;
        let depths = Depths::watch(publishing.clone(), declared);
        Ok(AmqpBroker {
            shared: Arc::new(Shared {
                publisher: Publisher::new(publishing),
                consuming,
                prefetch: settings.prefetch,
                depths,
            }),
        })
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    async fn publish(&self, topic: &str, messages: Vec<Outgoing>) -> Result<(), BrokerError> {
        self.shared.publisher.publish(topic, messages).await
    }

    async fn declare(&self, topology: &Topology) -> Result<(), BrokerError> {
        // Both links share what is declared: the consuming one declares it on its next connection.
        self.shared.publisher.link().declare(topology).await
    }

    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscription>, BrokerError> {
        let subscription = AmqpSubscription::start(
            self.shared.consuming.clone(),
            &topology::group_queue(topic, group),
            self.shared.prefetch,
        )
        .await?;
        Ok(Box::new(subscription))
    }

    async fn ready(&self) -> Result<(), BrokerError> {
        self.shared.publisher.ready().await
    }

    /// The ready messages of the topic's fullest queue, as last read (every few seconds);
    /// `None` until read, or when the last read failed.
    fn depth(&self, topic: &str) -> Option<u64> {
        self.shared.depths.get(topic)
    }
}

/// `Unavailable`, saying it is RabbitMQ's.
pub(crate) fn unavailable(reason: impl fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("rabbitmq: {reason}"))
}
