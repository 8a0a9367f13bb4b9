//! The Kafka adapter of Conveyor's broker port.
//!
//! `connect` creates the topology's topics; `publish` returns once every message is written by an
//! idempotent producer with `acks=all`; each subscription is a member of the Kafka consumer group
//! `{topic}.{group}` that commits only positions below which everything was acknowledged, and
//! hands nacked or dropped deliveries out again itself, since Kafka cannot requeue one message. A
//! dropped subscription stays in its group until the deliveries it handed out are settled (a
//! minute at most), so a worker pool that stops receiving can still finish what it runs. `depth`
//! is consumer lag, measured in the background.
//!
//! Kafka has no delayed delivery: wrap the broker in `conveyor_events::Scheduled`.

mod consumer;
mod inbox;
mod lag;
mod offsets;
mod producer;
mod topics;

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use conveyor_events::{Broker, BrokerError, Outgoing, Subscription, Topology};

use crate::lag::Lag;
use crate::producer::Producer;

/// How long `ready` waits for the cluster's answer.
const READY_TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port[,host:port]` of one or more brokers of the cluster.
    pub bootstrap: String,
    /// Partitions of each topic created: the most consumers of one group that get messages.
    pub partitions: i32,
    /// Replicas of each partition created; at most the number of brokers.
    pub replication: i32,
    /// How long a published message may take to be written before `publish` fails.
    pub message_timeout: Duration,
}

/// A Kafka cluster behind the broker port; clones share its producer.
#[derive(Clone)]
pub struct KafkaBroker {
    settings: KafkaSettings,
    producer: Producer,
    lag: Arc<Lag>,
    /// A topic whose metadata `ready` asks for, rather than every topic of the cluster.
    probe_topic: Option<String>,
}

impl KafkaBroker {
    /// Creates the topics of `topology` (those that exist are kept as they are). Fails with
    /// `Unavailable` if the cluster does not answer within a few seconds: the caller tries again.
    pub async fn connect(
        settings: KafkaSettings,
        topology: &Topology,
    ) -> Result<KafkaBroker, BrokerError> {
        if settings.partitions < 1 || settings.replication < 1 {
            return Err(BrokerError::Config(format!(
                "kafka: topics need at least one partition and one replica, not {} and {}",
                settings.partitions, settings.replication
            )));
        }
        if settings.message_timeout.is_zero() {
            // librdkafka reads zero as "never": a publish could then wait forever.
            return Err(BrokerError::Config(
                "kafka: the message timeout must be longer than zero".into(),
            ));
        }
        topics::create(&settings, topology).await?;
        Ok(KafkaBroker {
            producer: Producer::new(&settings)?,
            lag: Lag::new(&settings, topology),
            probe_topic: topology.topics().first().map(|topic| (*topic).to_owned()),
            settings,
        })
    }
}

#[async_trait]
impl Broker for KafkaBroker {
    async fn publish(&self, topic: &str, messages: Vec<Outgoing>) -> Result<(), BrokerError> {
        self.producer.publish(topic, &messages).await
    }

    async fn declare(&self, topology: &Topology) -> Result<(), BrokerError> {
        topics::create(&self.settings, topology).await?;
        self.lag.add(topology);
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscription>, BrokerError> {
        consumer::subscribe(&self.settings, topic, group)
    }

    async fn ready(&self) -> Result<(), BrokerError> {
        self.producer
            .ready(self.probe_topic.clone(), READY_TIMEOUT)
            .await
    }

    fn depth(&self, topic: &str) -> Option<u64> {
        self.lag.depth(topic)
    }
}

fn unavailable(what: &str, error: impl Display) -> BrokerError {
    BrokerError::Unavailable(format!("kafka: {what}: {error}"))
}

/// A duration as librdkafka's settings spell it.
fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}
