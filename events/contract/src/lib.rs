//! The broker port's contract: what every adapter (in-process, Kafka, RabbitMQ) promises the
//! rest of Conveyor. Each adapter's tests call every function here with a way to connect it;
//! each call works on topics of its own, so the cases run in parallel against one broker.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use conveyor_events::{
    Broker, Delivery, Lane, Outgoing, Scheduled, Subscription, Topics, Topology,
};
use conveyor_store::{Database, SqlSchedule};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a case waits for a message that must come (brokers may need a consumer-group
/// rebalance first).
const PATIENCE: Duration = Duration::from_secs(30);
/// How long a case watches for a message that must not come.
const QUIET: Duration = Duration::from_secs(2);

/// The two consumer groups and the kept topic every case declares.
pub const GROUP_A: &str = "group-a";
pub const GROUP_B: &str = "group-b";

/// A fresh topic namespace and its topology: `<unique>jobs` with [`GROUP_A`] and [`GROUP_B`],
/// and `<unique>dead-letter` kept.
pub fn fresh_topology() -> (Topics, Topology) {
    let topics = Topics::new(format!("contract-{}-", uuid::Uuid::now_v7().simple()));
    let topology = Topology {
        groups: vec![
            (topics.jobs(), GROUP_A.to_owned()),
            (topics.jobs(), GROUP_B.to_owned()),
        ],
        kept: vec![topics.dead_letter()],
    };
    (topics, topology)
}

/// `broker` with its delayed messages held in a fresh PostgreSQL schema (at
/// `CONVEYOR_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`) and released
/// by a task of its own: how Conveyor runs brokers without durable delays of their own.
pub async fn delayed_through_postgres(broker: Arc<dyn Broker>) -> Scheduled {
    let url = std::env::var("CONVEYOR_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let db = Database::connect(&url, None, Some(&schema))
        .await
        .expect("Failed to connect to PostgreSQL");
    db.migrate()
        .await
        .expect("Failed to migrate the test schema");
    let scheduled = Scheduled::new(broker, Arc::new(SqlSchedule::new(&db)));
    let releaser = scheduled.clone();
    tokio::spawn(async move { releaser.release_due(CancellationToken::new()).await });
    scheduled
}

/// Receives until `count` deliveries arrived, failing after [`PATIENCE`].
pub async fn receive(subscription: &mut Box<dyn Subscription>, count: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + PATIENCE;
    let mut received = Vec::new();
    while received.len() < count {
        let more = tokio::time::timeout_at(deadline, subscription.recv(count - received.len()))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {count} messages arrived within {PATIENCE:?}",
                    received.len()
                )
            })
            .expect("the broker hands out messages");
        received.extend(more);
    }
    received
}

/// Asserts that nothing arrives for [`QUIET`].
pub async fn nothing_arrives(subscription: &mut Box<dyn Subscription>) {
    if let Ok(received) = tokio::time::timeout(QUIET, subscription.recv(10)).await {
        let keys: Vec<String> = received
            .expect("the broker hands out messages")
            .into_iter()
            .map(|delivery| delivery.key)
            .collect();
        panic!("expected no message, received {keys:?}");
    }
}

fn keys(deliveries: &[Delivery]) -> BTreeSet<String> {
    deliveries.iter().map(|d| d.key.clone()).collect()
}

fn numbered(count: usize) -> Vec<Outgoing> {
    (0..count)
        .map(|n| Outgoing::now(format!("key-{n:03}"), format!("payload-{n}")))
        .collect()
}

async fn ack_all(deliveries: Vec<Delivery>) {
    for delivery in deliveries {
        delivery.ack().await.expect("ack");
    }
}

/// Each group gets every message, with key and payload intact, including messages published
/// before any consumer joined (the topology declared them).
pub async fn every_group_gets_every_message(broker: Arc<dyn Broker>, topics: &Topics) {
    broker.ready().await.expect("the broker is ready");
    broker
        .publish(&topics.jobs(), numbered(20))
        .await
        .expect("publish");
    for group in [GROUP_A, GROUP_B] {
        let mut subscription = broker.subscribe(&topics.jobs(), group).await.unwrap();
        let received = receive(&mut subscription, 20).await;
        assert_eq!(keys(&received), keys_of(20), "group {group}");
        for delivery in &received {
            let n = delivery
                .key
                .trim_start_matches("key-")
                .parse::<usize>()
                .unwrap();
            assert_eq!(delivery.payload, format!("payload-{n}").as_bytes());
            assert_eq!(delivery.redeliveries, 0);
        }
        ack_all(received).await;
    }
}

fn keys_of(count: usize) -> BTreeSet<String> {
    numbered(count).into_iter().map(|m| m.key).collect()
}

/// An acknowledged message is not delivered again to its group, even to a new consumer.
pub async fn acknowledged_messages_stay_acknowledged(broker: Arc<dyn Broker>, topics: &Topics) {
    broker.publish(&topics.jobs(), numbered(5)).await.unwrap();
    let mut subscription = broker.subscribe(&topics.jobs(), GROUP_A).await.unwrap();
    ack_all(receive(&mut subscription, 5).await).await;
    drop(subscription);
    let marker = Outgoing::now("marker", "after");
    broker.publish(&topics.jobs(), vec![marker]).await.unwrap();
    let mut subscription = broker.subscribe(&topics.jobs(), GROUP_A).await.unwrap();
    let received = receive(&mut subscription, 1).await;
    assert_eq!(keys(&received), BTreeSet::from(["marker".to_owned()]));
    ack_all(received).await;
    nothing_arrives(&mut subscription).await;
}

/// A nacked message, or one dropped unsettled, is delivered again, and says so.
pub async fn unsettled_messages_are_redelivered(broker: Arc<dyn Broker>, topics: &Topics) {
    broker.publish(&topics.jobs(), numbered(2)).await.unwrap();
    let mut subscription = broker.subscribe(&topics.jobs(), GROUP_A).await.unwrap();
    let mut first = receive(&mut subscription, 2).await;
    first.sort_by(|a, b| a.key.cmp(&b.key));
    let dropped = first.pop().unwrap();
    let nacked = first.pop().unwrap();
    nacked.nack().await.expect("nack");
    drop(dropped);
    let again = receive(&mut subscription, 2).await;
    assert_eq!(keys(&again), keys_of(2));
    assert!(
        again.iter().all(|d| d.redeliveries >= 1),
        "redeliveries are counted"
    );
    ack_all(again).await;
    nothing_arrives(&mut subscription).await;
}

/// Messages held by a consumer that goes away unsettled go to the next consumer of the group.
pub async fn a_lost_consumer_hands_its_messages_on(broker: Arc<dyn Broker>, topics: &Topics) {
    broker.publish(&topics.jobs(), numbered(3)).await.unwrap();
    let mut lost = broker.subscribe(&topics.jobs(), GROUP_A).await.unwrap();
    let held = receive(&mut lost, 3).await;
    // The consumer goes away first, then its unsettled deliveries.
    drop(lost);
    drop(held);
    let mut next = broker.subscribe(&topics.jobs(), GROUP_A).await.unwrap();
    let received = receive(&mut next, 3).await;
    assert_eq!(keys(&received), keys_of(3));
    ack_all(received).await;
}

/// A delayed message arrives once due, never before, in every group; a message published with
/// it for now is not held back by it.
pub async fn delayed_messages_wait_until_due(broker: Arc<dyn Broker>, topics: &Topics) {
    let due = Utc::now() + chrono::Duration::milliseconds(1500);
    broker
        .publish(
            &topics.jobs(),
            vec![
                Outgoing::at("later", "held", due),
                Outgoing::now("now", "at once"),
            ],
        )
        .await
        .unwrap();
    for group in [GROUP_A, GROUP_B] {
        let mut subscription = broker.subscribe(&topics.jobs(), group).await.unwrap();
        // Partitions have no order between them: "later" may come first once it is due.
        let mut arrived = Vec::new();
        while arrived.len() < 2 {
            for delivery in receive(&mut subscription, 1).await {
                arrived.push((delivery.key.clone(), delivery.payload.clone(), Utc::now()));
                delivery.ack().await.expect("ack");
            }
        }
        let keys: BTreeSet<&str> = arrived.iter().map(|(key, ..)| key.as_str()).collect();
        assert_eq!(keys, BTreeSet::from(["later", "now"]), "group {group}");
        let (_, payload, at) = arrived.iter().find(|(key, ..)| key == "later").unwrap();
        assert_eq!(payload, b"held".as_slice());
        assert!(*at >= due, "group {group}: arrived {at}, due {due}");
    }
}

/// Consumers of one group share its messages: between them they get every one.
pub async fn consumers_of_a_group_share_its_messages(broker: Arc<dyn Broker>, topics: &Topics) {
    let mut one = broker.subscribe(&topics.jobs(), GROUP_A).await.unwrap();
    let mut two = broker.subscribe(&topics.jobs(), GROUP_A).await.unwrap();
    broker.publish(&topics.jobs(), numbered(40)).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut seen = BTreeSet::new();
    while seen.len() < 40 {
        assert!(
            Instant::now() < deadline,
            "only {} of 40 arrived",
            seen.len()
        );
        let received = tokio::select! {
            received = one.recv(40) => received,
            received = two.recv(40) => received,
            _ = tokio::time::sleep(Duration::from_millis(200)) => Ok(Vec::new()),
        }
        .expect("the broker hands out messages");
        seen.extend(keys(&received));
        ack_all(received).await;
    }
    assert_eq!(seen, keys_of(40));
}

/// A kept topic (dead letters) takes messages with nobody consuming it.
pub async fn kept_topics_take_messages(broker: Arc<dyn Broker>, topics: &Topics) {
    broker
        .publish(&topics.dead_letter(), numbered(3))
        .await
        .expect("dead letters are taken");
    if let Some(depth) = broker.depth(&topics.dead_letter()) {
        assert!(depth <= 3, "depth {depth}");
    }
}

/// A topology declared after connecting (a queue first used later) gets its topics and groups:
/// each group receives what is published from then on, before any of its consumers joined.
pub async fn a_topology_declared_later_gets_its_groups(broker: Arc<dyn Broker>, topics: &Topics) {
    let topic = topics.lane("late", Lane::Jobs);
    let late = Topology {
        groups: vec![
            (topic.clone(), GROUP_A.to_owned()),
            (topic.clone(), GROUP_B.to_owned()),
        ],
        kept: Vec::new(),
    };
    broker.declare(&late).await.expect("declare");
    broker
        .declare(&late)
        .await
        .expect("declaring again changes nothing");
    broker.publish(&topic, numbered(5)).await.expect("publish");
    for group in [GROUP_A, GROUP_B] {
        let mut subscription = broker.subscribe(&topic, group).await.unwrap();
        let received = receive(&mut subscription, 5).await;
        assert_eq!(keys(&received), keys_of(5), "group {group}");
        ack_all(received).await;
    }
}

/// Runs every case, each on a fresh topology, connecting with `connect`.
#[macro_export]
macro_rules! broker_contract {
    ($connect:path) => {
        $crate::broker_contract!(@case $connect, every_group_gets_every_message);
        $crate::broker_contract!(@case $connect, acknowledged_messages_stay_acknowledged);
        $crate::broker_contract!(@case $connect, unsettled_messages_are_redelivered);
        $crate::broker_contract!(@case $connect, a_lost_consumer_hands_its_messages_on);
        $crate::broker_contract!(@case $connect, delayed_messages_wait_until_due);
        $crate::broker_contract!(@case $connect, consumers_of_a_group_share_its_messages);
        $crate::broker_contract!(@case $connect, kept_topics_take_messages);
        $crate::broker_contract!(@case $connect, a_topology_declared_later_gets_its_groups);
    };
    (@case $connect:path, $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let (topics, topology) = $crate::fresh_topology();
            let broker = $connect(&topology).await;
            $crate::$case(broker, &topics).await;
        }
    };
}
