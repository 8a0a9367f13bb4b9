//! The Kafka broker against the broker contract, with delayed messages held in PostgreSQL.
//!
//! Needs a Kafka-compatible broker at `CONVEYOR_TEST_KAFKA` (default `127.0.0.1:9092`) and
//! PostgreSQL at `CONVEYOR_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`).

use std::sync::Arc;
use std::time::Duration;

use conveyor_broker_contract::{
    GROUP_A, delayed_through_postgres, fresh_topology, nothing_arrives, receive,
};
use conveyor_events::{Broker, BrokerError, Outgoing, Topology};
use conveyor_kafka::{KafkaBroker, KafkaSettings};

fn settings(bootstrap: String) -> KafkaSettings {
    KafkaSettings {
        bootstrap,
        partitions: 4,
        replication: 1,
        message_timeout: Duration::from_secs(10),
    }
}

async fn connect(topology: &Topology) -> Arc<dyn Broker> {
    let bootstrap =
        std::env::var("CONVEYOR_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let kafka = KafkaBroker::connect(settings(bootstrap), topology)
        .await
        .expect("Failed to connect to Kafka");
    let scheduled = delayed_through_postgres(Arc::new(kafka)).await;
    Arc::new(scheduled)
}

conveyor_broker_contract::broker_contract!(connect);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_acknowledged_after_their_subscription_was_dropped_stay_acknowledged() {
    let (topics, topology) = fresh_topology();
    let broker = connect(&topology).await;
    let published = (0..3)
        .map(|n| Outgoing::now(format!("key-{n}"), "x"))
        .collect();
    broker.publish(&topics.jobs(), published).await.unwrap();
    let mut draining = broker.subscribe(&topics.jobs(), GROUP_A).await.unwrap();
    let in_flight = receive(&mut draining, 3).await;
    // A worker pool shutting down stops receiving first, then finishes what it runs.
    drop(draining);
    for delivery in in_flight {
        delivery.ack().await.expect("ack");
    }
    let mut next = broker.subscribe(&topics.jobs(), GROUP_A).await.unwrap();
    nothing_arrives(&mut next).await;
}

#[tokio::test]
async fn connecting_to_a_cluster_that_does_not_answer_fails_as_unavailable() {
    let (_, topology) = fresh_topology();
    let connected = KafkaBroker::connect(settings("127.0.0.1:1".to_owned()), &topology).await;
    assert!(matches!(connected, Err(BrokerError::Unavailable(_))));
}
