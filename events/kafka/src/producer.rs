//! Publishing: idempotent, acknowledged by every in-sync replica, and done only once every
//! message's delivery report says it is written.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use conveyor_events::{BrokerError, Outgoing};
use rdkafka::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use crate::{KafkaSettings, millis, unavailable};

/// A failed publish renews the producer at most this often.
const RENEWAL_PAUSE: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(crate) struct Producer {
    shared: Arc<Shared>,
}

struct Shared {
    current: RwLock<FutureProducer>,
    settings: KafkaSettings,
    renewed: Mutex<Instant>,
}

impl Producer {
    pub(crate) fn new(settings: &KafkaSettings) -> Result<Producer, BrokerError> {
        Ok(Producer {
            shared: Arc::new(Shared {
                current: RwLock::new(create(settings)?),
                settings: settings.clone(),
                renewed: Mutex::new(Instant::now()),
            }),
        })
    }

    fn producer(&self) -> FutureProducer {
        self.shared.current.read().unwrap().clone()
    }

    /// Replaces the producer after a failed publish. An idempotent producer's identity lives in
    /// the cluster: a broker that restarted without it refuses every later write of the old one
    /// ("unknown producer"), so only a new producer gets through again.
    fn renew(&self) {
        let mut renewed = self.shared.renewed.lock().unwrap();
        if renewed.elapsed() < RENEWAL_PAUSE {
            return;
        }
        *renewed = Instant::now();
        match create(&self.shared.settings) {
            Ok(fresh) => {
                tracing::info!(
                    "Kafka publish failed; publishing through a new producer from now on."
                );
                *self.shared.current.write().unwrap() = fresh;
            }
            Err(error) => tracing::warn!(%error, "Could not create a new Kafka producer."),
        }
    }

    /// Whether the cluster answers a metadata request for `topic` within `timeout`.
    pub(crate) async fn ready(
        &self,
        topic: Option<String>,
        timeout: Duration,
    ) -> Result<(), BrokerError> {
        let producer = self.producer();
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
        let published = self
            .publish_through(&self.producer(), topic, messages)
            .await;
        if published.is_err() {
            self.renew();
        }
        published
    }

    async fn publish_through(
        &self,
        producer: &FutureProducer,
        topic: &str,
        messages: &[Outgoing],
    ) -> Result<(), BrokerError> {
        let mut reports = Vec::with_capacity(messages.len());
        for message in messages {
            let record = FutureRecord::to(topic)
                .key(message.key.as_str())
                .payload(message.payload.as_ref());
            let report = producer.send_result(record).map_err(|(error, _)| {
                unavailable(&format!("cannot queue a message for {topic}"), error)
            })?;
            reports.push(report);
        }
        for report in reports {
            match report.await {
                Ok(Ok(_)) => {}
                // Sent and retried until the message timeout: the broker may have written it.
                Ok(Err((error, _)))
                    if error.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut) =>
                {
                    return Err(BrokerError::Unconfirmed(format!(
                        "kafka: a message to {topic} was not confirmed in time: {error}"
                    )));
                }
                Ok(Err((error, _))) => {
                    return Err(unavailable(
                        &format!("a message to {topic} was not written"),
                        error,
                    ));
                }
                Err(_) => {
                    return Err(BrokerError::Unconfirmed(format!(
                        "kafka: the producer went away before a message to {topic} was confirmed"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn create(settings: &KafkaSettings) -> Result<FutureProducer, BrokerError> {
    ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap)
        // Retries within the timeout then never duplicate or reorder a message.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", millis(settings.message_timeout))
        .create()
        .map_err(|error| BrokerError::Config(format!("kafka: cannot create a producer: {error}")))
}
