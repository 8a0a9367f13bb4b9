//! Persistent messages, published with confirms.

use std::sync::Arc;
use std::time::Duration;

use conveyor_events::{BrokerError, Outgoing};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use tokio::sync::Mutex;

use crate::connection::Link;
use crate::{topology, unavailable};

/// How long a publish may take, confirms included. Past it the outcome is unknown and the
/// caller is told the broker is unavailable (it may publish again: delivery is at least once).
/// RabbitMQ stops confirming when a resource alarm blocks publishers.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The header carrying a message's key: AMQP's `message-id` holds at most 255 bytes.
pub(crate) const KEY_HEADER: &str = "conveyor-key";

/// Written to disk before it is confirmed (quorum queues always write; classic queues only
/// persistent messages).
const PERSISTENT: u8 = 2;

/// A message no queue takes comes back instead of vanishing: a topic whose queues are gone
/// refuses messages rather than dropping them.
const MANDATORY: BasicPublishOptions = BasicPublishOptions {
    mandatory: true,
    immediate: false,
};

pub(crate) struct Publisher {
    link: Arc<Link>,
    /// The channel in confirm mode, opened on first use and again once closed. Locked while a
    /// publish sends its messages: lapin numbers a confirm when it queues the message, RabbitMQ
    /// when the message arrives, so the sends of two publishes must not interleave.
    channel: Mutex<Option<Channel>>,
}

impl Publisher {
    pub(crate) fn link(&self) -> &Link {
        &self.link
    }

    pub(crate) fn new(link: Arc<Link>) -> Publisher {
        Publisher {
            link,
            channel: Mutex::new(None),
        }
    }

    pub(crate) async fn ready(&self) -> Result<(), BrokerError> {
        self.link.ready().await
    }

    /// Sends every message, then waits for every confirm: the sends of concurrent publishes
    /// take turns, their confirms are awaited side by side.
    pub(crate) async fn publish(
        &self,
        topic: &str,
        messages: Vec<Outgoing>,
    ) -> Result<(), BrokerError> {
        if messages.is_empty() {
            return Ok(());
        }
        let exchange = topology::name(topic)?;
        let mut used = None;
        let attempt = self.send_and_confirm(&exchange, &messages, &mut used);
        let outcome = tokio::time::timeout(PUBLISH_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(BrokerError::Unconfirmed(format!(
                    "rabbitmq: {} message(s) to {topic} not confirmed within {} s",
                    messages.len(),
                    PUBLISH_TIMEOUT.as_secs()
                )))
            });
        if outcome.is_err()
            && let Some(channel) = used
        {
            // Whatever went wrong, the next publish starts on a fresh channel; this one closes
            // once the publishes still waiting on it are done with it.
            let mut current = self.channel.lock().await;
            if current.as_ref() == Some(&channel) {
                *current = None;
            }
        }
        outcome
    }

    /// `used` keeps the channel open until every confirm on it is in, and tells the caller
    /// which channel failed.
    async fn send_and_confirm(
        &self,
        exchange: &ShortString,
        messages: &[Outgoing],
        used: &mut Option<Channel>,
    ) -> Result<(), BrokerError> {
        let mut confirms = Vec::with_capacity(messages.len());
        {
            let mut current = self.channel.lock().await;
            let channel = match current.take() {
                Some(channel) if channel.status().connected() => channel,
                _ => self.open().await?,
            };
            let channel = used.insert(current.insert(channel).clone());
            for message in messages {
                let confirm = channel
                    .basic_publish(
                        exchange.clone(),
                        ShortString::default(),
                        MANDATORY,
                        &message.payload,
                        properties(&message.key),
                    )
                    .await
                    .map_err(|error| {
                        unavailable(format!(
                            "could not send message {} to {exchange}: {error}",
                            message.key
                        ))
                    })?;
                confirms.push(confirm);
            }
        }
        for (confirm, message) in confirms.into_iter().zip(messages) {
            let key = &message.key;
            let confirmation = confirm.await.map_err(|error| match error.kind() {
                // RabbitMQ closed the channel over this publish (no such exchange, say): refused.
                lapin::ErrorKind::ProtocolError(_) => {
                    unavailable(format!("message {key} to {exchange} refused: {error}"))
                }
                // Sent, and then the connection failed: RabbitMQ may have routed it.
                _ => BrokerError::Unconfirmed(format!(
                    "rabbitmq: message {key} to {exchange} not confirmed: {error}"
                )),
            })?;
            match confirmation {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(returned)) => {
                    return Err(unavailable(format!(
                        "no queue took message {key} on {exchange} ({} {})",
                        returned.reply_code, returned.reply_text
                    )));
                }
                Confirmation::Nack(_) => {
                    return Err(unavailable(format!(
                        "message {key} to {exchange} refused (nack)"
                    )));
                }
                Confirmation::NotRequested => {
                    return Err(unavailable(format!(
                        "message {key} to {exchange} sent without confirms"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn open(&self) -> Result<Channel, BrokerError> {
        let channel = self.link.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|error| unavailable(format!("could not turn on confirms: {error}")))?;
        Ok(channel)
    }
}

fn properties(key: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(KEY_HEADER.into(), AMQPValue::LongString(key.into()));
    BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_headers(headers)
}
