use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use tokio::sync::Notify;

use crate::{
    Acknowledger, Broker, BrokerError, Delivery, Journal, JournaledMessage, Outgoing, Subscription,
    Topology, due_millis,
};

/// Messages one consumer group may hold before publishers get `Unavailable` (and clients a `503`).
const DEFAULT_CAPACITY: usize = 1_000_000;
/// Bytes of message payloads the broker may hold in memory, whatever their number: a count alone
/// let 400 scheduled jobs of a megabyte each take a gigabyte.
const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The in-process broker of the embedded default. Each consumer group on a topic gets its own copy
/// of every message (like a Kafka consumer group, or a RabbitMQ queue bound to an exchange), and
/// within a group each message goes to one subscriber at a time. With a [`Journal`], messages are
/// durable before `publish` returns and are forgotten once every group has acknowledged them.
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

struct Inner {
    /// Read on every publish and written only when a topic or group first appears, so publishers
    /// share it without contending.
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    journal: Option<Arc<dyn Journal>>,
    next_seq: AtomicU64,
    capacity: usize,
    max_bytes: u64,
    /// Payload bytes of the messages some group still holds (each message once, whatever the
    /// number of groups).
    held_bytes: Arc<AtomicU64>,
}

#[derive(Default)]
struct Topic {
    groups: RwLock<HashMap<String, Arc<Queue>>>,
    /// Messages published while the topic had no group: kept only in the journal (dead letters,
    /// until someone reads them), so they take no memory and no capacity.
    retained: AtomicU64,
}

#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    arrived: Notify,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Stored>,
    /// Keyed by (due time in ms, seq) so the first entry is the next one due.
    delayed: BTreeMap<(i64, u64), Stored>,
}

/// One group's copy of a message.
struct Stored {
    key: String,
    payload: Bytes,
    redeliveries: u32,
    deliver_at_ms: Option<i64>,
    copies: Arc<Copies>,
}

/// The groups' copies of one message: the journal forgets it when the last one is acknowledged,
/// and its bytes stop counting when the last one is gone.
struct Copies {
    seq: u64,
    unacked: AtomicUsize,
    bytes: u64,
    held_bytes: Arc<AtomicU64>,
}

impl Drop for Copies {
    fn drop(&mut self) {
        self.held_bytes.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl QueueState {
    fn depth(&self) -> usize {
        self.ready.len() + self.delayed.len()
    }

    fn promote_due(&mut self, now_ms: i64) {
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            self.ready.push_back(entry.remove());
        }
    }

    fn insert(&mut self, stored: Stored) {
        match stored.deliver_at_ms {
            Some(at) => {
                self.delayed.insert((at, stored.copies.seq), stored);
            }
            None => self.ready.push_back(stored),
        }
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        MemoryBroker::new()
    }
}

impl MemoryBroker {
    /// A broker that keeps messages only in memory: for tests and throwaway runs.
    pub fn new() -> MemoryBroker {
        MemoryBroker::build(None, DEFAULT_CAPACITY, DEFAULT_MAX_BYTES)
    }

    /// A broker whose messages survive a restart: every publish is committed to `journal` before
    /// it returns, and whatever the journal still holds is delivered again to the groups of
    /// `topology`, which also receive everything published from now on. Kept topics live in the
    /// journal only, taking no memory.
    pub async fn durable(
        journal: Arc<dyn Journal>,
        topology: &Topology,
    ) -> Result<MemoryBroker, BrokerError> {
        let pending = journal.pending().await?;
        let broker = MemoryBroker::build(Some(journal), DEFAULT_CAPACITY, DEFAULT_MAX_BYTES);
        broker.declare_groups(topology);
        let last_seq = pending.iter().map(|m| m.seq).max().unwrap_or(0);
        broker.inner.next_seq.store(last_seq + 1, Ordering::Relaxed);
        let replayed = pending.len();
        for message in pending {
            let topic = broker.topic(&message.topic);
            topic.enqueue(&topic.queues(), message, 1, &broker.inner.held_bytes);
        }
        if replayed > 0 {
            tracing::info!(
                replayed,
                "Replayed unacknowledged messages from the journal."
            );
        }
        Ok(broker)
    }

    /// Bounds every group's queue to `capacity` messages, and what the broker holds to
    /// `max_bytes` of payloads.
    pub fn with_capacity(self, capacity: usize, max_bytes: u64) -> MemoryBroker {
        MemoryBroker::build(self.inner.journal.clone(), capacity, max_bytes)
    }

    /// Creates `group` on `topic` if it is new: it receives every message published from now on.
    pub fn declare_group(&self, topic: &str, group: &str) {
        self.queue(topic, group);
    }

    /// Creates the groups of `topology` that are new.
    pub fn declare_groups(&self, topology: &Topology) {
        for (topic, group) in &topology.groups {
            self.declare_group(topic, group);
        }
    }

    fn build(journal: Option<Arc<dyn Journal>>, capacity: usize, max_bytes: u64) -> MemoryBroker {
        MemoryBroker {
            inner: Arc::new(Inner {
                topics: RwLock::default(),
                journal,
                next_seq: AtomicU64::new(1),
                capacity,
                max_bytes,
                held_bytes: Arc::default(),
            }),
        }
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        if let Some(topic) = self.inner.topics.read().unwrap().get(name) {
            return topic.clone();
        }
        let mut topics = self.inner.topics.write().unwrap();
        topics.entry(name.to_owned()).or_default().clone()
    }

    fn queue(&self, topic: &str, group: &str) -> Arc<Queue> {
        let topic = self.topic(topic);
        if let Some(queue) = topic.groups.read().unwrap().get(group) {
            return queue.clone();
        }
        let mut groups = topic.groups.write().unwrap();
        groups.entry(group.to_owned()).or_default().clone()
    }
}

impl Topic {
    fn queues(&self) -> Vec<Arc<Queue>> {
        self.groups.read().unwrap().values().cloned().collect()
    }

    /// The depth of the fullest of `queues` (how far the slowest consumer is behind), or, for a
    /// topic without groups, how many messages only the journal keeps.
    fn depth(&self, queues: &[Arc<Queue>]) -> u64 {
        if queues.is_empty() {
            return self.retained.load(Ordering::Relaxed);
        }
        let deepest = queues
            .iter()
            .map(|queue| queue.state.lock().unwrap().depth())
            .max()
            .unwrap_or(0);
        deepest as u64
    }

    /// Gives each of the topic's `queues` its copy of `message`. A topic without groups keeps its
    /// messages only in the journal (dead letters, until someone subscribes to read them).
    fn enqueue(
        &self,
        queues: &[Arc<Queue>],
        message: JournaledMessage,
        redeliveries: u32,
        held_bytes: &Arc<AtomicU64>,
    ) {
        if queues.is_empty() {
            self.retained.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let bytes = message.payload.len() as u64;
        held_bytes.fetch_add(bytes, Ordering::Relaxed);
        let copies = Arc::new(Copies {
            seq: message.seq,
            unacked: AtomicUsize::new(queues.len()),
            bytes,
            held_bytes: held_bytes.clone(),
        });
        for queue in queues {
            let stored = Stored {
                key: message.key.clone(),
                payload: message.payload.clone(),
                redeliveries,
                deliver_at_ms: message.deliver_at.map(due_millis),
                copies: copies.clone(),
            };
            queue.state.lock().unwrap().insert(stored);
            queue.arrived.notify_waiters();
        }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, topic: &str, messages: Vec<Outgoing>) -> Result<(), BrokerError> {
        let held = self.topic(topic);
        let queues = held.queues();
        if !queues.is_empty() && held.depth(&queues) as usize + messages.len() > self.inner.capacity
        {
            return Err(BrokerError::Unavailable(format!(
                "topic {topic} holds its maximum of {} messages",
                self.inner.capacity
            )));
        }
        let incoming: u64 = messages.iter().map(|m| m.payload.len() as u64).sum();
        let holding = self.inner.held_bytes.load(Ordering::Relaxed);
        if !queues.is_empty() && holding + incoming > self.inner.max_bytes {
            return Err(BrokerError::Unavailable(format!(
                "the in-process broker holds its maximum of {} MiB of messages",
                self.inner.max_bytes / (1024 * 1024)
            )));
        }
        let first = self
            .inner
            .next_seq
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        let journaled: Vec<JournaledMessage> = messages
            .into_iter()
            .zip(first..)
            .map(|(message, seq)| JournaledMessage {
                seq,
                topic: topic.to_owned(),
                key: message.key,
                payload: message.payload,
                deliver_at: message.deliver_at,
            })
            .collect();
        if let Some(journal) = &self.inner.journal {
            journal.append(journaled.clone()).await?;
        }
        // Read again: a group that appeared while the journal committed gets these messages too.
        let queues = held.queues();
        for message in journaled {
            held.enqueue(&queues, message, 0, &self.inner.held_bytes);
        }
        Ok(())
    }

    async fn declare(&self, topology: &Topology) -> Result<(), BrokerError> {
        self.declare_groups(topology);
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscription>, BrokerError> {
        Ok(Box::new(MemorySubscription {
            queue: self.queue(topic, group),
            inner: self.inner.clone(),
        }))
    }

    async fn ready(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    fn depth(&self, topic: &str) -> Option<u64> {
        let topic = self.topic(topic);
        Some(topic.depth(&topic.queues()))
    }
}

struct MemorySubscription {
    queue: Arc<Queue>,
    inner: Arc<Inner>,
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn recv(&mut self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        loop {
            let arrived = self.queue.arrived.notified();
            tokio::pin!(arrived);
            // Registered before looking, so a publish between the look and the wait still wakes us.
            arrived.as_mut().enable();
            let now_ms = Utc::now().timestamp_millis();
            let next_due_ms = {
                let mut state = self.queue.state.lock().unwrap();
                state.promote_due(now_ms);
                if !state.ready.is_empty() {
                    let take = max.max(1).min(state.ready.len());
                    let batch: Vec<Stored> = state.ready.drain(..take).collect();
                    drop(state);
                    return Ok(batch.into_iter().map(|s| self.deliver(s)).collect());
                }
                state.delayed.first_key_value().map(|((at, _), _)| *at)
            };
            match next_due_ms {
                Some(at) => {
                    let wait = std::time::Duration::from_millis((at - now_ms).max(1) as u64);
                    tokio::select! {
                        _ = arrived => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                None => arrived.await,
            }
        }
    }
}

impl MemorySubscription {
    fn deliver(&self, stored: Stored) -> Delivery {
        let key = stored.key.clone();
        let payload = stored.payload.clone();
        let redeliveries = stored.redeliveries;
        let acknowledger = MemoryAck {
            queue: self.queue.clone(),
            inner: self.inner.clone(),
            message: Some(stored),
        };
        Delivery::new(key, payload, redeliveries, Box::new(acknowledger))
    }
}

struct MemoryAck {
    queue: Arc<Queue>,
    inner: Arc<Inner>,
    message: Option<Stored>,
}

impl MemoryAck {
    fn requeue(&mut self) {
        if let Some(mut stored) = self.message.take() {
            stored.redeliveries += 1;
            stored.deliver_at_ms = None;
            self.queue.state.lock().unwrap().ready.push_front(stored);
            self.queue.arrived.notify_waiters();
        }
    }
}

#[async_trait]
impl Acknowledger for MemoryAck {
    async fn ack(mut self: Box<Self>) -> Result<(), BrokerError> {
        let Some(stored) = self.message.take() else {
            return Ok(());
        };
        let last_copy = stored.copies.unacked.fetch_sub(1, Ordering::AcqRel) == 1;
        match &self.inner.journal {
            Some(journal) if last_copy => journal.remove(stored.copies.seq).await,
            _ => Ok(()),
        }
    }

    async fn nack(mut self: Box<Self>) -> Result<(), BrokerError> {
        self.requeue();
        Ok(())
    }
}

impl Drop for MemoryAck {
    fn drop(&mut self) {
        self.requeue();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn recv_one(subscription: &mut Box<dyn Subscription>) -> Delivery {
        tokio::time::timeout(Duration::from_secs(2), subscription.recv(1))
            .await
            .expect("a message arrives")
            .unwrap()
            .remove(0)
    }

    #[tokio::test]
    async fn a_published_message_is_delivered_once_acked() {
        let broker = MemoryBroker::new();
        let mut sub = broker.subscribe("t", "g").await.unwrap();
        broker
            .publish("t", vec![Outgoing::now("k", "hello")])
            .await
            .unwrap();
        let delivery = recv_one(&mut sub).await;
        assert_eq!(&delivery.payload[..], b"hello");
        assert_eq!(delivery.redeliveries, 0);
        delivery.ack().await.unwrap();
        assert_eq!(broker.depth("t"), Some(0));
    }

    #[tokio::test]
    async fn a_dropped_delivery_comes_back() {
        let broker = MemoryBroker::new();
        let mut sub = broker.subscribe("t", "g").await.unwrap();
        broker
            .publish("t", vec![Outgoing::now("k", "x")])
            .await
            .unwrap();
        drop(recv_one(&mut sub).await);
        let again = recv_one(&mut sub).await;
        assert_eq!(again.redeliveries, 1);
    }

    #[tokio::test]
    async fn a_delayed_message_waits_for_its_time() {
        let broker = MemoryBroker::new();
        let mut sub = broker.subscribe("t", "g").await.unwrap();
        let due = Utc::now() + chrono::Duration::milliseconds(150);
        broker
            .publish("t", vec![Outgoing::at("k", "later", due)])
            .await
            .unwrap();
        let delivery = recv_one(&mut sub).await;
        assert!(Utc::now() >= due, "delivered before it was due");
        delivery.ack().await.unwrap();
    }

    #[tokio::test]
    async fn each_group_gets_its_own_copy() {
        let broker = MemoryBroker::new();
        let mut workers = broker.subscribe("t", "workers").await.unwrap();
        let mut recorder = broker.subscribe("t", "recorder").await.unwrap();
        broker
            .publish("t", vec![Outgoing::now("k", "x")])
            .await
            .unwrap();
        recv_one(&mut workers).await.ack().await.unwrap();
        let copy = recv_one(&mut recorder).await;
        assert_eq!(&copy.payload[..], b"x");
        assert_eq!(broker.depth("t"), Some(0));
    }

    #[tokio::test]
    async fn a_topic_without_groups_keeps_its_messages_out_of_memory_and_capacity() {
        let broker = MemoryBroker::new().with_capacity(1, DEFAULT_MAX_BYTES);
        for key in ["a", "b", "c"] {
            broker
                .publish("dead", vec![Outgoing::now(key, "x")])
                .await
                .unwrap();
        }
        assert_eq!(broker.depth("dead"), Some(3));
    }

    #[tokio::test]
    async fn what_the_broker_holds_is_bounded_in_bytes_until_it_is_acknowledged() {
        let broker = MemoryBroker::new().with_capacity(100, 100);
        broker.declare_group("t", "workers");
        broker.declare_group("t", "recorder");
        let big = || vec![Outgoing::now("k", vec![0u8; 60])];
        broker.publish("t", big()).await.unwrap();
        let refused = broker.publish("t", big()).await;
        assert!(matches!(refused, Err(BrokerError::Unavailable(_))));
        // Counted once for both groups, and until both have acknowledged it.
        let mut workers = broker.subscribe("t", "workers").await.unwrap();
        let mut recorder = broker.subscribe("t", "recorder").await.unwrap();
        recv_one(&mut workers).await.ack().await.unwrap();
        assert!(broker.publish("t", big()).await.is_err());
        recv_one(&mut recorder).await.ack().await.unwrap();
        broker.publish("t", big()).await.unwrap();
    }

    #[tokio::test]
    async fn a_full_topic_refuses_publishes() {
        let broker = MemoryBroker::new().with_capacity(1, DEFAULT_MAX_BYTES);
        broker.declare_group("t", "g");
        broker
            .publish("t", vec![Outgoing::now("a", "1")])
            .await
            .unwrap();
        let refused = broker.publish("t", vec![Outgoing::now("b", "2")]).await;
        assert!(matches!(refused, Err(BrokerError::Unavailable(_))));
    }
}
