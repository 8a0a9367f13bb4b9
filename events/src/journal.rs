use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::BrokerError;

/// A message the journal holds until it is acknowledged.
#[derive(Debug, Clone)]
pub struct JournaledMessage {
    pub seq: u64,
    pub topic: String,
    pub key: String,
    pub payload: Bytes,
    pub deliver_at: Option<DateTime<Utc>>,
}

/// Durable storage behind the in-process broker: appended before a publish is confirmed,
/// removed on ack, replayed on start. Implemented by the store over the embedded database.
#[async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Returns once the messages are committed.
    async fn append(&self, messages: Vec<JournaledMessage>) -> Result<(), BrokerError>;
    /// Forgets an acknowledged message. Need not wait for the commit: a lost ack only means a
    /// redelivery, which consumers tolerate.
    async fn remove(&self, seq: u64) -> Result<(), BrokerError>;
    /// Every message not yet acknowledged, oldest first.
    async fn pending(&self) -> Result<Vec<JournaledMessage>, BrokerError>;
}
