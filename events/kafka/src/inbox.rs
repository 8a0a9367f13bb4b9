//! What one subscription holds locally: messages fetched and not yet handed out, messages handed
//! back, and the offsets their partitions may commit. It is also the consumer's context, so that
//! rebalances commit and forget exactly what it tracks.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use conveyor_events::BrokerError;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::Notify;

use crate::offsets::{Offsets, Ticket};
use crate::unavailable;

/// Messages fetched ahead of `recv`, at most: beyond this the subscription stops polling until
/// half of them are taken, so a long backlog stays in Kafka (and librdkafka's bounded queue), not
/// in memory. Not by pausing partitions: on resume, tansu never sent the messages that pausing
/// purged from librdkafka's queue again.
const PREFETCH: usize = 512;

/// A message held by the subscription, waiting or handed out.
pub(crate) struct Held {
    pub(crate) key: String,
    pub(crate) payload: Bytes,
    pub(crate) redeliveries: u32,
    pub(crate) ticket: Ticket,
}

pub(crate) struct Inbox {
    topic: String,
    state: Mutex<State>,
    /// Woken when `ready` gains a message.
    arrived: Notify,
    /// Woken when a handed-out delivery is settled.
    settled: Notify,
    /// Woken when `recv` has taken enough for polling to go on.
    room: Notify,
}

#[derive(Default)]
struct State {
    offsets: Offsets,
    /// Positions moved by acknowledgements and not yet committed.
    moved: BTreeMap<i32, i64>,
    /// Waiting for `recv`: fetched in order, handed-back ones in front.
    ready: VecDeque<Held>,
    /// Deliveries handed out and not yet settled.
    handed_out: usize,
    /// Fetching is paused: the subscription is closing.
    paused: bool,
    /// The subscription was dropped: nothing is handed out any more.
    closing: bool,
    /// The last fetch error, unless a message came since: for the next `recv` that finds nothing.
    failure: Option<KafkaError>,
}

impl Inbox {
    pub(crate) fn new(topic: &str) -> Inbox {
        Inbox {
            topic: topic.to_owned(),
            state: Mutex::default(),
            arrived: Notify::new(),
            settled: Notify::new(),
            room: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves counters that are still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a fetched message for `recv`.
    pub(crate) fn fetched(&self, message: &BorrowedMessage<'_>) {
        let mut state = self.state();
        // Fetching works again: an earlier error is no news for `recv`.
        state.failure = None;
        let ticket = state.offsets.fetched(message.partition(), message.offset());
        state.ready.push_back(Held {
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
            redeliveries: 0,
            ticket,
        });
        drop(state);
        self.arrived.notify_one();
    }

    /// Whether polling for more messages may go on.
    pub(crate) fn has_room(&self) -> bool {
        self.state().ready.len() < PREFETCH
    }

    /// Waits until `recv` has taken enough for polling to go on.
    pub(crate) async fn room(&self) {
        self.room.notified().await;
    }

    pub(crate) fn failed(&self, error: KafkaError) {
        self.state().failure = Some(error);
        self.arrived.notify_one();
    }

    /// Up to `max` waiting messages, now handed out; `None` if none waits.
    pub(crate) fn take(&self, max: usize) -> Result<Option<Vec<Held>>, BrokerError> {
        let mut state = self.state();
        let take = max.max(1).min(state.ready.len());
        let batch: Vec<Held> = state.ready.drain(..take).collect();
        state.handed_out += batch.len();
        if state.ready.len() <= PREFETCH / 2 {
            self.room.notify_one();
        }
        if !batch.is_empty() {
            return Ok(Some(batch));
        }
        match state.failure.take() {
            Some(error) => Err(unavailable("could not fetch messages", error)),
            None => Ok(None),
        }
    }

    pub(crate) async fn arrival(&self) {
        self.arrived.notified().await;
    }

    /// Records an acknowledgement: its partition's position may move, to be committed on the
    /// next interval.
    pub(crate) fn acknowledge(&self, ticket: &Ticket) {
        let mut state = self.state();
        state.handed_out -= 1;
        if let Some(position) = state.offsets.acknowledged(ticket) {
            state.moved.insert(ticket.partition, position);
        }
        drop(state);
        self.settled.notify_one();
    }

    /// Commits the positions acknowledgements moved since the last time, without waiting.
    pub(crate) fn commit_moved(&self, consumer: &impl Consumer<Inbox>) {
        let moved: Vec<(i32, i64)> = std::mem::take(&mut self.state().moved)
            .into_iter()
            .collect();
        if moved.is_empty() {
            return;
        }
        let committed = self
            .positions(&moved)
            .and_then(|positions| consumer.commit(&positions, CommitMode::Async));
        if let Err(error) = committed {
            tracing::warn!(topic = %self.topic, %error, "Could not commit acknowledged offsets; they are committed with their partitions' next acknowledgement or revocation.");
        }
    }

    /// Takes back an unsettled delivery: `recv` hands it out again, unless its partition has
    /// been revoked (its next owner gets it) or the subscription is closing.
    pub(crate) fn hand_back(&self, mut held: Held) {
        let mut state = self.state();
        state.handed_out -= 1;
        let requeued = !state.closing && state.offsets.is_current(&held.ticket);
        if requeued {
            held.redeliveries += 1;
            state.ready.push_front(held);
        }
        drop(state);
        if requeued {
            self.arrived.notify_one();
        }
        self.settled.notify_one();
    }

    /// Stops handing out: fetching pauses and waiting messages are let go, so they stay
    /// uncommitted for the partitions' next owner.
    pub(crate) fn close(&self, consumer: &impl Consumer<Inbox>) {
        let mut state = self.state();
        state.closing = true;
        state.ready.clear();
        if !state.paused {
            state.paused = pause_assignment(consumer);
        }
    }

    /// Waits until every delivery handed out has been settled.
    pub(crate) async fn all_settled(&self) {
        loop {
            if self.state().handed_out == 0 {
                return;
            }
            self.settled.notified().await;
        }
    }

    fn positions(&self, positions: &[(i32, i64)]) -> Result<TopicPartitionList, KafkaError> {
        let mut list = TopicPartitionList::with_capacity(positions.len());
        for (partition, position) in positions {
            list.add_partition_offset(&self.topic, *partition, Offset::Offset(*position))?;
        }
        Ok(list)
    }

    /// Commits what the revoked partitions acknowledged, and forgets them: their next owner starts
    /// from there, and their deliveries still out can no longer be acknowledged here.
    fn revoke(&self, consumer: &BaseConsumer<Inbox>, revoked: &TopicPartitionList) {
        let partitions: Vec<i32> = revoked
            .elements_for_topic(&self.topic)
            .iter()
            .map(|element| element.partition())
            .collect();
        let positions = {
            let mut state = self.state();
            state
                .ready
                .retain(|held| !partitions.contains(&held.ticket.partition));
            state
                .moved
                .retain(|partition, _| !partitions.contains(partition));
            state.offsets.forget(&partitions)
        };
        if positions.is_empty() {
            return;
        }
        // Not a synchronous commit: it waits without a bound, and with the broker gone (the very
        // moment partitions are lost) it blocked the runtime's threads for good. A commit that
        // does not arrive means some acknowledged messages are delivered again, which consumers
        // tolerate.
        let committed = self
            .positions(&positions)
            .and_then(|positions| consumer.commit(&positions, CommitMode::Async));
        if let Err(error) = committed {
            tracing::warn!(
                topic = %self.topic,
                %error,
                "Could not commit the offsets of revoked partitions; their next owner may deliver acknowledged messages again."
            );
        }
    }
}

/// Pauses fetching every partition assigned now; returns whether it did.
fn pause_assignment(consumer: &impl Consumer<Inbox>) -> bool {
    let done = consumer
        .assignment()
        .and_then(|assigned| consumer.pause(&assigned));
    match done {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "Could not pause fetching.");
            false
        }
    }
}

impl ClientContext for Inbox {}

impl ConsumerContext for Inbox {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            self.revoke(consumer, revoked);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(assigned) = rebalance else {
            return;
        };
        // Newly assigned partitions start fetching; they must wait too while the inbox is paused.
        let paused = self.state().paused;
        if paused && let Err(error) = consumer.pause(assigned) {
            tracing::warn!(topic = %self.topic, %error, "Could not pause newly assigned partitions.");
        }
    }

    fn commit_callback(&self, committed: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(error) = committed {
            tracing::warn!(
                topic = %self.topic,
                %error,
                "Could not commit acknowledged offsets; they are committed with their partitions' next acknowledgement or revocation."
            );
        }
    }
}
