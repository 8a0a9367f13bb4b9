use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::Topology;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot take messages now (down, full, not confirming); callers answer `503`.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// Messages were sent but their fate is unknown (no confirmation in time, the connection
    /// lost while waiting for it): the broker may hold them. Whoever published must act as if it
    /// might.
    #[error("broker did not confirm: {0}")]
    Unconfirmed(String),
    #[error("broker misconfigured: {0}")]
    Config(String),
}

/// A message to publish. `key` orders and partitions (the job id); `deliver_at` holds the
/// message back until then.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub key: String,
    pub payload: Bytes,
    pub deliver_at: Option<DateTime<Utc>>,
}

impl Outgoing {
    pub fn now(key: impl Into<String>, payload: impl Into<Bytes>) -> Outgoing {
        Outgoing {
            key: key.into(),
            payload: payload.into(),
            deliver_at: None,
        }
    }

    pub fn at(key: impl Into<String>, payload: impl Into<Bytes>, when: DateTime<Utc>) -> Outgoing {
        Outgoing {
            deliver_at: Some(when),
            ..Outgoing::now(key, payload)
        }
    }
}

/// `at` in whole milliseconds, rounded up, so that a message is never due before its time.
pub fn due_millis(at: DateTime<Utc>) -> i64 {
    let millis = at.timestamp_millis();
    if at.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        millis
    } else {
        millis + 1
    }
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Returns once every message is durable in the broker; an error means none may be assumed
    /// delivered.
    async fn publish(&self, topic: &str, messages: Vec<Outgoing>) -> Result<(), BrokerError>;

    /// Creates the topics and groups of `topology` that are new (a queue first used after the
    /// broker was connected), so that every group of theirs receives what is published from now
    /// on; what exists is left as it is.
    async fn declare(&self, topology: &Topology) -> Result<(), BrokerError>;

    /// Joins the consumer group `group` on `topic`: each message goes to one member at a time.
    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscription>, BrokerError>;

    /// Whether the broker answers now, for `/readyz`.
    async fn ready(&self) -> Result<(), BrokerError>;

    /// Messages waiting on `topic` (ready or delayed, not in flight), where the broker knows.
    fn depth(&self, topic: &str) -> Option<u64>;
}

#[async_trait]
pub trait Subscription: Send {
    /// Waits for at least one message and returns up to `max`.
    async fn recv(&mut self, max: usize) -> Result<Vec<Delivery>, BrokerError>;
}

/// Settles one delivery. Dropping it unsettled hands the message back for redelivery.
#[async_trait]
pub trait Acknowledger: Send + Sync {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError>;
    async fn nack(self: Box<Self>) -> Result<(), BrokerError>;
}

pub struct Delivery {
    pub key: String,
    pub payload: Bytes,
    /// How many times this message was handed out before.
    pub redeliveries: u32,
    acknowledger: Box<dyn Acknowledger>,
}

impl Delivery {
    pub fn new(
        key: String,
        payload: Bytes,
        redeliveries: u32,
        acknowledger: Box<dyn Acknowledger>,
    ) -> Delivery {
        Delivery {
            key,
            payload,
            redeliveries,
            acknowledger,
        }
    }

    /// The outcome is recorded: the broker may forget the message.
    pub async fn ack(self) -> Result<(), BrokerError> {
        self.acknowledger.ack().await
    }

    /// Not handled here: give it to another consumer.
    pub async fn nack(self) -> Result<(), BrokerError> {
        self.acknowledger.nack().await
    }
}
