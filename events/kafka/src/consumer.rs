//! Subscriptions: one Kafka consumer in the group's consumer group each, fed by a background task
//! that keeps polling it, so rebalances and liveness are served even while every delivery is
//! busy and nobody calls `recv`.

use std::ops::Deref;
use std::sync::{Arc, Weak, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use conveyor_events::{Acknowledger, BrokerError, Delivery, Subscription};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::sync::oneshot;

use crate::inbox::{Held, Inbox};
use crate::{KafkaSettings, millis, unavailable};

type KafkaConsumer = StreamConsumer<Inbox>;

/// How often acknowledged positions are committed.
const COMMIT_INTERVAL: Duration = Duration::from_millis(500);
/// Short, so that the partitions of a killed consumer move to the others within seconds.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
/// How long a dropped subscription stays in its group for the deliveries it handed out to be
/// settled (a worker pool finishing its running jobs), before it leaves anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(60);
/// How long the closing of a consumer is waited for, by its polling task and by a runtime shutting
/// down: librdkafka's close waits for every commit in flight, and one that the broker's going away
/// interrupted is retried until the broker is back, without a bound. Longer than the session
/// timeout, after which librdkafka gives up the commits still waiting for a coordinator.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Joins the Kafka consumer group of `group` on `topic`.
pub(crate) fn subscribe(
    settings: &KafkaSettings,
    topic: &str,
    group: &str,
) -> Result<Box<dyn Subscription>, BrokerError> {
    let consumer: KafkaConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap)
        .set("group.id", group_id(topic, group))
        // A group that has never committed starts at the beginning: the topology created its
        // topics before anything was published, so nothing published is missed.
        .set("auto.offset.reset", "earliest")
        // Only positions the inbox computed from acknowledgements are ever committed.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("session.timeout.ms", millis(SESSION_TIMEOUT))
        // A full inbox stops polling until workers take from it, which may be long for slow
        // jobs: the consumer must stay in its group meanwhile.
        .set("max.poll.interval.ms", "3600000")
        .set("heartbeat.interval.ms", millis(HEARTBEAT_INTERVAL))
        // A rebalance then revokes only the partitions that move: deliveries of the others stay
        // acknowledgeable instead of all coming again.
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create_with_context(Inbox::new(topic))
        .map_err(|error| {
            BrokerError::Config(format!("kafka: cannot create a consumer: {error}"))
        })?;
    consumer
        .subscribe(&[topic])
        .map_err(|error| unavailable(&format!("cannot subscribe to {topic}"), error))?;
    let inbox = consumer.context().clone();
    let (closer, closed) = oneshot::channel();
    tokio::spawn(poll(Owned(Some(consumer)), closed));
    Ok(Box::new(KafkaSubscription {
        inbox,
        _closer: closer,
    }))
}

/// The Kafka consumer group of `group` on `topic`: topics carry the deployment's prefix, so
/// deployments sharing a cluster never share a group.
pub(crate) fn group_id(topic: &str, group: &str) -> String {
    format!("{topic}.{group}")
}

struct KafkaSubscription {
    inbox: Arc<Inbox>,
    /// Dropped with the subscription, which tells the polling task to close the consumer.
    _closer: oneshot::Sender<()>,
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn recv(&mut self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        let inbox = &self.inbox;
        loop {
            if let Some(batch) = inbox.take(max)? {
                let handle = Arc::downgrade(inbox);
                return Ok(batch
                    .into_iter()
                    .map(|held| deliver(handle.clone(), held))
                    .collect());
            }
            inbox.arrival().await;
        }
    }
}

/// Polls the consumer and commits acknowledged positions until the subscription is dropped; then
/// lets the deliveries still out be settled and closes it: its revocation commits what they
/// acknowledged before it leaves the group.
async fn poll(consumer: Owned, mut closed: oneshot::Receiver<()>) {
    let inbox = consumer.context().clone();
    let mut commits = tokio::time::interval(COMMIT_INTERVAL);
    loop {
        let has_room = inbox.has_room();
        tokio::select! {
            _ = &mut closed => break,
            _ = commits.tick() => inbox.commit_moved(&*consumer),
            _ = inbox.room(), if !has_room => {}
            received = consumer.recv(), if has_room => match received {
                Ok(message) => inbox.fetched(&message),
                Err(error) => inbox.failed(error),
            },
        }
    }
    inbox.close(&*consumer);
    let grace = tokio::time::sleep(CLOSE_GRACE);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            _ = inbox.all_settled() => break,
            _ = &mut grace => {
                tracing::warn!(grace = ?CLOSE_GRACE, "Deliveries were still unsettled when the grace period ended; they will be delivered again.");
                break;
            }
            _ = commits.tick() => inbox.commit_moved(&*consumer),
            // Serves rebalances meanwhile; fetching is paused, so no message comes.
            _ = consumer.recv() => {}
        }
    }
    let closing = consumer.close();
    // A blocking task, which a runtime shutting down waits for: a process that stops lets its
    // consumers leave their groups, instead of leaving their partitions idle for a session timeout.
    let waited = tokio::task::spawn_blocking(move || closing.recv_timeout(CLOSE_TIMEOUT)).await;
    if !matches!(waited, Ok(Ok(()))) {
        tracing::warn!(timeout = ?CLOSE_TIMEOUT, "A Kafka consumer did not close in time; it goes on closing in the background.");
    }
}

/// The consumer of a polling task, closed on a thread of its own however the task ends: a runtime
/// shutting down drops the task wherever it waits, and a close that never ends must not hold up the
/// shutdown there.
struct Owned(Option<KafkaConsumer>);

impl Owned {
    fn close(mut self) -> mpsc::Receiver<()> {
        close(self.0.take().expect("a consumer is closed once"))
    }
}

impl Deref for Owned {
    type Target = KafkaConsumer;

    fn deref(&self) -> &KafkaConsumer {
        self.0
            .as_ref()
            .expect("a consumer is used until it is closed")
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            close(consumer);
        }
    }
}

/// Starts closing `consumer`; the receiver hears when it is closed.
fn close(consumer: KafkaConsumer) -> mpsc::Receiver<()> {
    let (closed, hear) = mpsc::channel();
    // Dropping closes: it waits for the group to let the consumer go.
    std::thread::spawn(move || {
        drop(consumer);
        let _ = closed.send(());
    });
    hear
}

fn deliver(inbox: Weak<Inbox>, held: Held) -> Delivery {
    let key = held.key.clone();
    let payload = held.payload.clone();
    let redeliveries = held.redeliveries;
    let acknowledger = KafkaAck {
        inbox,
        held: Some(held),
    };
    Delivery::new(key, payload, redeliveries, Box::new(acknowledger))
}

/// Settles in the subscription's inbox while its consumer lives; once it has closed, the message
/// stays uncommitted, for the group to deliver again.
struct KafkaAck {
    inbox: Weak<Inbox>,
    held: Option<Held>,
}

impl KafkaAck {
    fn hand_back(&mut self) {
        if let (Some(held), Some(inbox)) = (self.held.take(), self.inbox.upgrade()) {
            inbox.hand_back(held);
        }
    }
}

#[async_trait]
impl Acknowledger for KafkaAck {
    async fn ack(mut self: Box<Self>) -> Result<(), BrokerError> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        match self.inbox.upgrade() {
            Some(inbox) => {
                inbox.acknowledge(&held.ticket);
                Ok(())
            }
            None => Err(BrokerError::Unavailable(
                "kafka: the subscription closed before this acknowledgement; the message will be delivered again".into(),
            )),
        }
    }

    async fn nack(mut self: Box<Self>) -> Result<(), BrokerError> {
        self.hand_back();
        Ok(())
    }
}

impl Drop for KafkaAck {
    fn drop(&mut self) {
        self.hand_back();
    }
}
