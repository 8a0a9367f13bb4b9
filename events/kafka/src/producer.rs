//! Publishing: idempotent, acknowledged by every in-sync replica, and done only once every
//! message's delivery report says it is written.

use std::time::Duration;

use conveyor_events::{BrokerError, Outgoing};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use crate::{KafkaSettings, millis, unavailable};

#[derive(Clone)]
pub(crate) struct Producer {
    producer: FutureProducer,
}

impl Producer {
    pub(crate) fn new(settings: &KafkaSettings) -> Result<Producer, BrokerError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &settings.bootstrap)
            // Retries within the timeout then never duplicate or reorder a message.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", millis(settings.message_timeout))
            .create()
            .map_err(|error| {
                BrokerError::Config(format!("kafka: cannot create a producer: {error}"))
            })?;
        Ok(Producer { producer })
    }

    /// Whether the cluster answers a metadata request for `topic` within `timeout`.
    pub(crate) async fn ready(
        &self,
        topic: Option<String>,
        timeout: Duration,
    ) -> Result<(), BrokerError> {
        let producer = self.producer.clone();
        // The request blocks its thread until answered or timed out.
        let answered = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(topic.as_deref(), timeout)
                .map(drop)
        })
        .await
        .map_err(|error| unavailable("the metadata request failed", error))?;
        answered.map_err(|error| unavailable("no metadata from the cluster", error))
    }

    /// Keys each message by `Outgoing::key` (the job id), so that one job's messages share a
    /// partition. Every message is queued before any report is awaited: they travel together.
    /// `deliver_at` is not looked at: `Scheduled` holds delayed messages until they are due.
    pub(crate) async fn publish(
        &self,
        topic: &str,
        messages: &[Outgoing],
    ) -> Result<(), BrokerError> {
        let mut reports = Vec::with_capacity(messages.len());
        for message in messages {
            let record = FutureRecord::to(topic)
                .key(message.key.as_str())
                .payload(message.payload.as_ref());
            let report = self.producer.send_result(record).map_err(|(error, _)| {
                unavailable(&format!("cannot queue a message for {topic}"), error)
            })?;
            reports.push(report);
        }
        for report in reports {
            match report.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => {
                    return Err(unavailable(
                        &format!("a message to {topic} was not written"),
                        error,
                    ));
                }
                Err(_) => {
                    return Err(BrokerError::Unavailable(format!(
                        "kafka: the producer went away before a message to {topic} was written"
                    )));
                }
            }
        }
        Ok(())
    }
}
