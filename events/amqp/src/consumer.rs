//! Consuming a group's queue with manual acknowledgements.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use conveyor_events::{Acknowledger, BrokerError, Delivery, Subscription};
use futures_util::{FutureExt, StreamExt};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Acker, Consumer};

use crate::connection::Link;
use crate::publisher::KEY_HEADER;
use crate::{topology, unavailable};

/// Set by quorum queues on a message handed out before: how many times.
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

const REQUEUE: BasicNackOptions = BasicNackOptions {
    multiple: false,
    requeue: true,
};

pub(crate) struct AmqpSubscription {
    link: Arc<Link>,
    queue: ShortString,
    prefetch: u16,
    /// The consumer, which keeps its own channel open; `None` once it failed, until the next
    /// `recv` starts another.
    consumer: Option<Consumer>,
}

impl AmqpSubscription {
    pub(crate) async fn start(
        link: Arc<Link>,
        queue: &str,
        prefetch: u16,
    ) -> Result<AmqpSubscription, BrokerError> {
        let queue = topology::name(queue)?;
        let consumer = consume(&link, &queue, prefetch).await?;
        Ok(AmqpSubscription {
            link,
            queue,
            prefetch,
            consumer: Some(consumer),
        })
    }
}

/// A consumer on a channel of its own, holding at most `prefetch` unacknowledged deliveries.
async fn consume(link: &Link, queue: &ShortString, prefetch: u16) -> Result<Consumer, BrokerError> {
    let channel = link.channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(|error| unavailable(format!("could not set the prefetch of {queue}: {error}")))?;
    channel
        .basic_consume(
            queue.clone(),
            ShortString::default(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|error| unavailable(format!("could not consume {queue}: {error}")))
}

#[async_trait]
impl Subscription for AmqpSubscription {
    /// Cancel-safe: the consumer stays in place while waiting, so a caller that gives up on a
    /// `recv` loses nothing (deliveries taken and then dropped go back to the queue).
    async fn recv(&mut self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        let consumer = match &mut self.consumer {
            Some(consumer) => consumer,
            vacant => vacant.insert(consume(&self.link, &self.queue, self.prefetch).await?),
        };
        let first = match consumer.next().await {
            Some(Ok(first)) => first,
            Some(Err(error)) => {
                self.consumer = None;
                return Err(unavailable(format!(
                    "consuming {} failed: {error}",
                    self.queue
                )));
            }
            None => {
                self.consumer = None;
                return Err(unavailable(format!(
                    "RabbitMQ cancelled the consumer of {} (queue deleted or connection closed)",
                    self.queue
                )));
            }
        };
        let mut batch = vec![delivery(first)];
        while batch.len() < max {
            match consumer.next().now_or_never() {
                Some(Some(Ok(next))) => batch.push(delivery(next)),
                None => break,
                Some(Some(Err(_)) | None) => {
                    // The batch so far goes out (its acks will fail and RabbitMQ hands the
                    // messages out again); the next `recv` starts a new consumer.
                    self.consumer = None;
                    break;
                }
            }
        }
        Ok(batch)
    }
}

fn delivery(delivery: lapin::message::Delivery) -> Delivery {
    let headers = delivery.properties.headers().as_ref();
    let header = |name: &str| headers.and_then(|headers| headers.inner().get(name));
    let key = match header(KEY_HEADER) {
        Some(AMQPValue::LongString(key)) => String::from_utf8_lossy(key.as_bytes()).into_owned(),
        _ => String::new(),
    };
    // Quorum queues count deliveries; classic queues only say whether there was one before.
    let redeliveries = header(DELIVERY_COUNT_HEADER)
        .and_then(count)
        .unwrap_or(u32::from(delivery.redelivered));
    Delivery::new(
        key,
        Bytes::from(delivery.data),
        redeliveries,
        Box::new(AmqpAck {
            acker: delivery.acker,
        }),
    )
}

fn count(value: &AMQPValue) -> Option<u32> {
    let count = match *value {
        AMQPValue::ShortShortInt(count) => i64::from(count),
        AMQPValue::ShortShortUInt(count) => i64::from(count),
        AMQPValue::ShortInt(count) => i64::from(count),
        AMQPValue::ShortUInt(count) => i64::from(count),
        AMQPValue::LongInt(count) => i64::from(count),
        AMQPValue::LongUInt(count) => i64::from(count),
        AMQPValue::LongLongInt(count) => count,
        _ => return None,
    };
    u32::try_from(count).ok()
}

struct AmqpAck {
    acker: Acker,
}

#[async_trait]
impl Acknowledger for AmqpAck {
    async fn ack(self: Box<Self>) -> Result<(), BrokerError> {
        match self.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            // lapin declines to ack on a channel that closed: RabbitMQ hands the message out again.
            Ok(false) => Err(unavailable(
                "the delivery's channel closed before the ack; the message will be delivered again",
            )),
            Err(error) => Err(unavailable(format!("ack failed: {error}"))),
        }
    }

    async fn nack(self: Box<Self>) -> Result<(), BrokerError> {
        // `Ok(false)`: the channel closed, which hands the message back just as well.
        self.acker
            .nack(REQUEUE)
            .await
            .map(drop)
            .map_err(|error| unavailable(format!("nack failed: {error}")))
    }
}

impl Drop for AmqpAck {
    fn drop(&mut self) {
        // Settled, or its channel closed (which hands the message back by itself).
        if !self.acker.usable() {
            return;
        }
        // Without a runtime the message stays with this consumer until its channel closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let acker = self.acker.clone();
            runtime.spawn(async move {
                if let Err(error) = acker.nack(REQUEUE).await {
                    tracing::debug!(%error, "Could not hand back a dropped delivery.");
                }
            });
        }
    }
}
