use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use tokio::sync::Notify;

use crate::{
    Acknowledger, Broker, BrokerError, Delivery, Journal, JournaledMessage, Outgoing, Subscription,
};

/// Messages one topic may hold before publishers get `Unavailable` (and clients a `503`).
const DEFAULT_CAPACITY: usize = 1_000_000;

/// The in-process broker of the embedded default: one consumer group per topic, messages held in
/// memory and, with a [`Journal`], made durable before `publish` returns.
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

struct Inner {
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    journal: Option<Arc<dyn Journal>>,
    next_seq: AtomicU64,
    capacity: usize,
}

#[derive(Default)]
struct Topic {
    state: Mutex<TopicState>,
    arrived: Notify,
}

#[derive(Default)]
struct TopicState {
    ready: VecDeque<Stored>,
    /// Keyed by (due time in ms, seq) so the first entry is the next one due.
    delayed: BTreeMap<(i64, u64), Stored>,
}

struct Stored {
    seq: u64,
    key: String,
    payload: Bytes,
    redeliveries: u32,
}

impl TopicState {
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

    fn insert(&mut self, stored: Stored, deliver_at_ms: Option<i64>) {
        match deliver_at_ms {
            Some(at) => {
                self.delayed.insert((at, stored.seq), stored);
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
        MemoryBroker::build(None)
    }

    /// A broker whose messages survive a restart: every publish is committed to `journal` before
    /// it returns, and whatever the journal still holds is delivered again.
    pub async fn durable(journal: Arc<dyn Journal>) -> Result<MemoryBroker, BrokerError> {
        let pending = journal.pending().await?;
        let broker = MemoryBroker::build(Some(journal));
        let last_seq = pending.iter().map(|m| m.seq).max().unwrap_or(0);
        broker.inner.next_seq.store(last_seq + 1, Ordering::Relaxed);
        let replayed = pending.len();
        for message in pending {
            let topic = broker.topic(&message.topic);
            let deliver_at = message.deliver_at.map(|at| at.timestamp_millis());
            let stored = Stored {
                seq: message.seq,
                key: message.key,
                payload: message.payload,
                redeliveries: 1,
            };
            topic.state.lock().unwrap().insert(stored, deliver_at);
        }
        if replayed > 0 {
            tracing::info!(
                replayed,
                "Replayed unacknowledged messages from the journal."
            );
        }
        Ok(broker)
    }

    pub fn with_capacity(self, capacity: usize) -> MemoryBroker {
        let inner =
            Arc::into_inner(self.inner).expect("set the capacity before sharing the broker");
        MemoryBroker {
            inner: Arc::new(Inner { capacity, ..inner }),
        }
    }

    fn build(journal: Option<Arc<dyn Journal>>) -> MemoryBroker {
        MemoryBroker {
            inner: Arc::new(Inner {
                topics: Mutex::default(),
                journal,
                next_seq: AtomicU64::new(1),
                capacity: DEFAULT_CAPACITY,
            }),
        }
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        let mut topics = self.inner.topics.lock().unwrap();
        topics.entry(name.to_owned()).or_default().clone()
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, topic_name: &str, messages: Vec<Outgoing>) -> Result<(), BrokerError> {
        let topic = self.topic(topic_name);
        if topic.state.lock().unwrap().depth() + messages.len() > self.inner.capacity {
            return Err(BrokerError::Unavailable(format!(
                "topic {topic_name} holds its maximum of {} messages",
                self.inner.capacity
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
                topic: topic_name.to_owned(),
                key: message.key,
                payload: message.payload,
                deliver_at: message.deliver_at,
            })
            .collect();
        if let Some(journal) = &self.inner.journal {
            journal.append(journaled.clone()).await?;
        }
        {
            let mut state = topic.state.lock().unwrap();
            for message in journaled {
                let deliver_at = message.deliver_at.map(|at| at.timestamp_millis());
                let stored = Stored {
                    seq: message.seq,
                    key: message.key,
                    payload: message.payload,
                    redeliveries: 0,
                };
                state.insert(stored, deliver_at);
            }
        }
        topic.arrived.notify_waiters();
        Ok(())
    }

    async fn subscribe(
        &self,
        topic: &str,
        _group: &str,
    ) -> Result<Box<dyn Subscription>, BrokerError> {
        Ok(Box::new(MemorySubscription {
            topic: self.topic(topic),
            inner: self.inner.clone(),
        }))
    }

    async fn ready(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    fn depth(&self, topic: &str) -> Option<u64> {
        Some(self.topic(topic).state.lock().unwrap().depth() as u64)
    }
}

struct MemorySubscription {
    topic: Arc<Topic>,
    inner: Arc<Inner>,
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn recv(&mut self, max: usize) -> Result<Vec<Delivery>, BrokerError> {
        loop {
            let arrived = self.topic.arrived.notified();
            tokio::pin!(arrived);
            // Registered before looking, so a publish between the look and the wait still wakes us.
            arrived.as_mut().enable();
            let now_ms = Utc::now().timestamp_millis();
            let next_due_ms = {
                let mut state = self.topic.state.lock().unwrap();
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
            topic: self.topic.clone(),
            inner: self.inner.clone(),
            message: Some(stored),
        };
        Delivery::new(key, payload, redeliveries, Box::new(acknowledger))
    }
}

struct MemoryAck {
    topic: Arc<Topic>,
    inner: Arc<Inner>,
    message: Option<Stored>,
}

impl MemoryAck {
    fn requeue(&mut self) {
        if let Some(mut stored) = self.message.take() {
            stored.redeliveries += 1;
            self.topic.state.lock().unwrap().ready.push_front(stored);
            self.topic.arrived.notify_waiters();
        }
    }
}

#[async_trait]
impl Acknowledger for MemoryAck {
    async fn ack(mut self: Box<Self>) -> Result<(), BrokerError> {
        let Some(stored) = self.message.take() else {
            return Ok(());
        };
        match &self.inner.journal {
            Some(journal) => journal.remove(stored.seq).await,
            None => Ok(()),
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
    async fn a_full_topic_refuses_publishes() {
        let broker = MemoryBroker::new().with_capacity(1);
        broker
            .publish("t", vec![Outgoing::now("a", "1")])
            .await
            .unwrap();
        let refused = broker.publish("t", vec![Outgoing::now("b", "2")]).await;
        assert!(matches!(refused, Err(BrokerError::Unavailable(_))));
    }
}
