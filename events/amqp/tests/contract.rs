//! The RabbitMQ broker against the broker contract (delayed messages held in PostgreSQL), then
//! what only RabbitMQ has: confirms that refuse, queue types, and recovery from a lost broker.
//!
//! Needs RabbitMQ at `CONVEYOR_TEST_AMQP` (default `amqp://guest:guest@127.0.0.1:5672/%2f`) and
//! PostgreSQL at `CONVEYOR_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use conveyor_amqp::{AmqpBroker, AmqpSettings, QueueType};
use conveyor_broker_contract::{
    GROUP_A, GROUP_B, delayed_through_postgres, fresh_topology, receive,
};
use conveyor_events::{Broker, BrokerError, Outgoing, Scheduled, Subscription, Topology};
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn amqp_url() -> String {
    std::env::var("CONVEYOR_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn settings(url: String, queue_type: QueueType) -> AmqpSettings {
    AmqpSettings {
        url,
        prefetch: 64,
        queue_type,
    }
}

async fn connect(topology: &Topology) -> Arc<dyn Broker> {
    let amqp = AmqpBroker::connect(settings(amqp_url(), QueueType::Quorum), topology)
        .await
        .expect("Failed to connect to RabbitMQ");
    let scheduled = delayed_through_postgres(Arc::new(amqp)).await;
    Arc::new(Cleaned {
        broker: scheduled,
        topology: Mutex::new(topology.clone()),
    })
}

/// A contract case's broker, whose queues and exchanges go when the case is done with it: quorum
/// queues left behind by every run would weigh on the shared test broker.
struct Cleaned {
    broker: Scheduled,
    /// Everything declared: at connect and since.
    topology: Mutex<Topology>,
}

#[async_trait]
impl Broker for Cleaned {
    async fn publish(&self, topic: &str, messages: Vec<Outgoing>) -> Result<(), BrokerError> {
        self.broker.publish(topic, messages).await
    }

    async fn declare(&self, topology: &Topology) -> Result<(), BrokerError> {
        self.topology.lock().unwrap().merge(topology);
        self.broker.declare(topology).await
    }

    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscription>, BrokerError> {
        self.broker.subscribe(topic, group).await
    }

    async fn ready(&self) -> Result<(), BrokerError> {
        self.broker.ready().await
    }

    fn depth(&self, topic: &str) -> Option<u64> {
        self.broker.depth(topic)
    }
}

impl Drop for Cleaned {
    fn drop(&mut self) {
        let topology = self.topology.lock().unwrap().clone();
        // Dropped inside the case's runtime, which cannot block on the cleanup itself.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("Failed to start a runtime for the cleanup");
            runtime.block_on(async {
                let (_connection, channel) = inspector().await;
                delete(&channel, &topology).await;
            });
        });
        if cleanup.join().is_err() && !std::thread::panicking() {
            panic!("Failed to delete the case's queues");
        }
    }
}

conveyor_broker_contract::broker_contract!(connect);

/// A channel of the test's own, to look at (and clean up) what the broker declared.
async fn inspector() -> (Connection, Channel) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("Failed to connect to RabbitMQ");
    let channel = connection
        .create_channel()
        .await
        .expect("Failed to open a channel");
    (connection, channel)
}

/// Deletes the queues and exchanges of `topology` (RabbitMQ deletes missing ones quietly).
async fn delete(channel: &Channel, topology: &Topology) {
    let queues = topology
        .groups
        .iter()
        .map(|(topic, group)| format!("{topic}.{group}"))
        .chain(topology.kept.iter().cloned());
    for queue in queues {
        channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .expect("Failed to delete a queue");
    }
    for topic in topology.topics() {
        channel
            .exchange_delete(topic.into(), ExchangeDeleteOptions::default())
            .await
            .expect("Failed to delete an exchange");
    }
}

/// The arguments the broker declares a queue with: its type, for quorum queues a delivery limit
/// out of reach, and for group queues where their dead letters go.
fn arguments(queue_type: &str, dead_letters: Option<&str>) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(queue_type.into()),
    );
    if queue_type == "quorum" {
        arguments.insert("x-delivery-limit".into(), AMQPValue::LongInt(1_000_000_000));
    }
    if let Some(exchange) = dead_letters {
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(exchange.into()),
        );
    }
    arguments
}

/// Declares `queue` again; RabbitMQ refuses (and closes the channel) unless it exists with the
/// same durability and arguments.
async fn redeclare(queue: &str, durable: bool, arguments: FieldTable) -> Result<(), lapin::Error> {
    let (_connection, channel) = inspector().await;
    let options = QueueDeclareOptions {
        durable,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), options, arguments)
        .await
        .map(drop)
}

#[tokio::test]
async fn a_message_no_queue_takes_is_refused_not_accepted() {
    let (topics, topology) = fresh_topology();
    let broker = AmqpBroker::connect(settings(amqp_url(), QueueType::Quorum), &topology)
        .await
        .expect("Failed to connect to RabbitMQ");
    let (_connection, channel) = inspector().await;
    for group in [GROUP_A, GROUP_B] {
        let queue = format!("{}.{group}", topics.jobs());
        channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .expect("Failed to delete a queue");
    }

    let refused = broker
        .publish(&topics.jobs(), vec![Outgoing::now("k", "lost?")])
        .await;

    assert!(
        matches!(&refused, Err(BrokerError::Unavailable(reason)) if reason.contains("NO_ROUTE")),
        "{refused:?}"
    );
    broker
        .publish(&topics.dead_letter(), vec![Outgoing::now("k", "kept")])
        .await
        .expect("the channel is usable again after a refusal");
    delete(&channel, &topology).await;
}

#[tokio::test]
async fn a_topic_without_an_exchange_is_refused() {
    let (_, topology) = fresh_topology();
    let broker = AmqpBroker::connect(settings(amqp_url(), QueueType::Quorum), &topology)
        .await
        .expect("Failed to connect to RabbitMQ");

    let refused = broker
        .publish("conveyor-test-undeclared", vec![Outgoing::now("k", "x")])
        .await;

    assert!(
        matches!(&refused, Err(BrokerError::Unavailable(reason)) if reason.contains("NOT_FOUND")),
        "{refused:?}"
    );
    let (_connection, channel) = inspector().await;
    delete(&channel, &topology).await;
}

#[tokio::test]
async fn quorum_queues_are_declared_durable_and_quorum() {
    let (topics, topology) = fresh_topology();
    AmqpBroker::connect(settings(amqp_url(), QueueType::Quorum), &topology)
        .await
        .expect("Failed to connect to RabbitMQ");
    let dead_letters = topics.dead_letter();
    let queues = [
        (
            format!("{}.{GROUP_A}", topics.jobs()),
            Some(dead_letters.as_str()),
        ),
        (
            format!("{}.{GROUP_B}", topics.jobs()),
            Some(dead_letters.as_str()),
        ),
        (dead_letters.clone(), None),
    ];

    for (queue, dead_letters) in &queues {
        redeclare(queue, true, arguments("quorum", *dead_letters))
            .await
            .unwrap_or_else(|error| panic!("{queue} is a durable quorum queue: {error}"));
        let error = redeclare(queue, true, arguments("classic", *dead_letters))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("x-queue-type"), "{error}");
    }
    let clash = AmqpBroker::connect(settings(amqp_url(), QueueType::Classic), &topology).await;
    assert!(
        matches!(clash, Err(BrokerError::Config(_))),
        "a type clash is a configuration error"
    );

    let (_connection, channel) = inspector().await;
    delete(&channel, &topology).await;
}

#[tokio::test]
async fn classic_queues_are_declared_durable_and_classic() {
    let (topics, topology) = fresh_topology();
    AmqpBroker::connect(settings(amqp_url(), QueueType::Classic), &topology)
        .await
        .expect("Failed to connect to RabbitMQ");
    let dead_letters = topics.dead_letter();
    let queues = [
        (
            format!("{}.{GROUP_A}", topics.jobs()),
            Some(dead_letters.as_str()),
        ),
        (dead_letters.clone(), None),
    ];

    for (queue, dead_letters) in &queues {
        redeclare(queue, true, arguments("classic", *dead_letters))
            .await
            .unwrap_or_else(|error| panic!("{queue} is a durable classic queue: {error}"));
        let error = redeclare(queue, false, arguments("classic", *dead_letters))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("durable"), "{error}");
    }

    let (_connection, channel) = inspector().await;
    delete(&channel, &topology).await;
}

#[tokio::test]
async fn depth_is_read_in_the_background() {
    let (topics, topology) = fresh_topology();
    let broker = AmqpBroker::connect(settings(amqp_url(), QueueType::Quorum), &topology)
        .await
        .expect("Failed to connect to RabbitMQ");
    let messages = (0..3)
        .map(|n| Outgoing::now(format!("k{n}"), "x"))
        .collect();
    broker
        .publish(&topics.dead_letter(), messages)
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    while broker.depth(&topics.dead_letter()) != Some(3) {
        assert!(
            Instant::now() < deadline,
            "depth {:?}",
            broker.depth(&topics.dead_letter())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(broker.depth(&topics.jobs()), Some(0));

    let (_connection, channel) = inspector().await;
    delete(&channel, &topology).await;
}

/// A TCP relay to RabbitMQ that the test can cut, as a broker restart or a network failure would.
struct Relay {
    address: SocketAddr,
    state: Arc<Mutex<RelayState>>,
}

struct RelayState {
    /// Cancelled to cut every relayed connection.
    connections: CancellationToken,
    /// Accepts connections but relays nothing, like a broker that does not answer.
    silent: bool,
}

impl Relay {
    async fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(RelayState {
            connections: CancellationToken::new(),
            silent: false,
        }));
        let relayed = state.clone();
        let upstream = rabbitmq_address();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (cut, silent) = {
                    let state = relayed.lock().unwrap();
                    (state.connections.clone(), state.silent)
                };
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if silent {
                        cut.cancelled().await;
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Relay { address, state }
    }

    /// The test URL, through the relay.
    fn url(&self) -> String {
        amqp_url().replacen(&rabbitmq_address(), &self.address.to_string(), 1)
    }

    /// Cuts every connection; new ones are relayed, or held in silence when `silent`.
    fn cut(&self, silent: bool) {
        let mut state = self.state.lock().unwrap();
        state.connections.cancel();
        state.connections = CancellationToken::new();
        state.silent = silent;
    }
}

fn rabbitmq_address() -> String {
    let url = amqp_url();
    let after_credentials = url.rsplit_once('@').map_or(url.as_str(), |(_, rest)| rest);
    let authority = after_credentials.trim_start_matches("amqp://");
    authority.split('/').next().unwrap_or(authority).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_recovers_from_a_lost_connection_and_fails_fast_while_down() {
    let (topics, topology) = fresh_topology();
    let relay = Relay::start().await;
    let broker = AmqpBroker::connect(settings(relay.url(), QueueType::Quorum), &topology)
        .await
        .expect("Failed to connect to RabbitMQ through the relay");
    let mut subscription = broker.subscribe(&topics.jobs(), GROUP_A).await.unwrap();
    broker
        .publish(&topics.jobs(), vec![Outgoing::now("before", "1")])
        .await
        .unwrap();
    let unsettled = receive(&mut subscription, 1).await;

    relay.cut(false);

    let failed = tokio::time::timeout(Duration::from_secs(5), subscription.recv(1))
        .await
        .expect("a consumer notices its lost connection");
    assert!(matches!(failed, Err(BrokerError::Unavailable(_))));
    for delivery in unsettled {
        assert!(
            delivery.ack().await.is_err(),
            "an ack on a lost channel fails"
        );
    }
    // The publishing connection notices the cut as soon as its reader runs: let it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    broker.ready().await.expect("ready reconnects");
    broker
        .publish(&topics.jobs(), vec![Outgoing::now("after", "2")])
        .await
        .expect("publish reconnects");
    let mut keys: Vec<String> = receive(&mut subscription, 2)
        .await
        .into_iter()
        .map(|delivery| delivery.key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["after", "before"], "the next recv consumes again");

    relay.cut(true);

    // The first publish may still find the dying channel; the second surely waits on a new
    // connection that RabbitMQ never answers.
    for attempt in ["first", "second"] {
        let started = Instant::now();
        let refused = broker
            .publish(&topics.jobs(), vec![Outgoing::now("down", "3")])
            .await;
        // Sent on the dying channel, the first may also be left unconfirmed.
        let unconfirmed =
            attempt == "first" && matches!(&refused, Err(BrokerError::Unconfirmed(_)));
        assert!(
            unconfirmed || matches!(&refused, Err(BrokerError::Unavailable(_))),
            "{attempt}: {refused:?}"
        );
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(7), "{attempt} took {waited:?}");
    }
    assert!(broker.ready().await.is_err());

    let (_connection, channel) = inspector().await;
    delete(&channel, &topology).await;
}
