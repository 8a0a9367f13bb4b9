//! The exchanges, queues and bindings a [`Topology`] becomes in RabbitMQ.

use std::sync::{Arc, RwLock};

use conveyor_events::{BrokerError, Topology};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ErrorKind, ExchangeKind};

use crate::{QueueType, unavailable};

/// The delivery limit of quorum queues. RabbitMQ 3.x quorum queues have none unless asked;
/// RabbitMQ 4 defaults to 20 and then drops or dead-letters the message. Conveyor's workers
/// count attempts themselves and nack a job back whenever they cannot record its outcome (a
/// database outage nacks the same message many times), so the broker must never give up on a
/// message: the limit is set out of reach. (RabbitMQ 4 also reads `-1` as "no limit", but 3.x
/// refuses negative limits; this value works on both.)
const DELIVERY_LIMIT: i32 = 1_000_000_000;

/// The queue of consumer group `group` on `topic`.
pub(crate) fn group_queue(topic: &str, group: &str) -> String {
    format!("{topic}.{group}")
}

/// Everything declared so far: the topology given at connect, and what was added since (queues
/// first used later). Declared again whole on every new connection.
pub(crate) struct Declared {
    queue_type: QueueType,
    topology: RwLock<Topology>,
    current: RwLock<Arc<Declaration>>,
}

impl Declared {
    pub(crate) fn new(topology: &Topology, queue_type: QueueType) -> Result<Declared, BrokerError> {
        Ok(Declared {
            queue_type,
            current: RwLock::new(Arc::new(Declaration::new(topology, queue_type)?)),
            topology: RwLock::new(topology.clone()),
        })
    }

    pub(crate) fn current(&self) -> Arc<Declaration> {
        self.current.read().unwrap().clone()
    }

    /// Adds `topology` and returns everything declared with it: a queue's arguments follow from
    /// the whole (its dead-letter exchange), so that declaring it again later never clashes.
    pub(crate) fn add(&self, topology: &Topology) -> Result<Arc<Declaration>, BrokerError> {
        let mut whole = self.topology.write().unwrap();
        let mut merged = whole.clone();
        merged.merge(topology);
        let declaration = Arc::new(Declaration::new(&merged, self.queue_type)?);
        *whole = merged;
        *self.current.write().unwrap() = declaration.clone();
        Ok(declaration)
    }
}

/// What to declare, with names checked once: AMQP names are at most 255 bytes.
pub(crate) struct Declaration {
    /// One fanout exchange per topic, named after it.
    exchanges: Vec<ShortString>,
    queues: Vec<DeclaredQueue>,
}

struct DeclaredQueue {
    name: ShortString,
    /// The exchange it is bound to.
    topic: ShortString,
    arguments: FieldTable,
}

impl Declaration {
    pub(crate) fn new(
        topology: &Topology,
        queue_type: QueueType,
    ) -> Result<Declaration, BrokerError> {
        let dead_letters = topology.kept.first();
        let exchanges = topology
            .topics()
            .into_iter()
            .map(name)
            .collect::<Result<_, _>>()?;
        let groups = topology.groups.iter().map(|(topic, group)| {
            // A group on the dead-letter topic itself must not dead-letter into it again.
            let dead_letters = dead_letters.filter(|kept| *kept != topic);
            Ok(DeclaredQueue {
                name: name(&group_queue(topic, group))?,
                topic: name(topic)?,
                arguments: arguments(queue_type, dead_letters),
            })
        });
        let kept = topology.kept.iter().map(|topic| {
            Ok(DeclaredQueue {
                name: name(topic)?,
                topic: name(topic)?,
                arguments: arguments(queue_type, None),
            })
        });
        Ok(Declaration {
            exchanges,
            queues: groups.chain(kept).collect::<Result<_, _>>()?,
        })
    }

    /// Declares everything; what exists already is left as it is, and a queue that exists with
    /// other arguments (another type, say) is a configuration error.
    pub(crate) async fn declare(&self, channel: &Channel) -> Result<(), BrokerError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for exchange in &self.exchanges {
            channel
                .exchange_declare(
                    exchange.clone(),
                    ExchangeKind::Fanout,
                    durable,
                    FieldTable::default(),
                )
                .await
                .map_err(|error| refused(format!("exchange {exchange}"), &error))?;
        }
        for queue in &self.queues {
            channel
                .queue_declare(
                    queue.name.clone(),
                    QueueDeclareOptions::durable(),
                    queue.arguments.clone(),
                )
                .await
                .map_err(|error| refused(format!("queue {}", queue.name), &error))?;
            channel
                .queue_bind(
                    queue.name.clone(),
                    queue.topic.clone(),
                    ShortString::default(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|error| refused(format!("binding of queue {}", queue.name), &error))?;
        }
        Ok(())
    }

    /// Each topic with the queues that hold its messages.
    pub(crate) fn queues_by_topic(&self) -> Vec<(&str, Vec<&ShortString>)> {
        self.exchanges
            .iter()
            .map(|topic| {
                let queues = self.queues.iter().filter(|queue| queue.topic == *topic);
                (topic.as_str(), queues.map(|queue| &queue.name).collect())
            })
            .collect()
    }
}

/// `value` as an AMQP name, refused when too long for one.
pub(crate) fn name(value: &str) -> Result<ShortString, BrokerError> {
    ShortString::try_new(value).map_err(|error| {
        BrokerError::Config(format!("rabbitmq: the name `{value}` is too long: {error}"))
    })
}

fn arguments(queue_type: QueueType, dead_letters: Option<&String>) -> FieldTable {
    let mut arguments = FieldTable::default();
    let kind = match queue_type {
        QueueType::Quorum => "quorum",
        QueueType::Classic => "classic",
    };
    arguments.insert("x-queue-type".into(), AMQPValue::LongString(kind.into()));
    if queue_type == QueueType::Quorum {
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(DELIVERY_LIMIT),
        );
    }
    if let Some(exchange) = dead_letters {
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(exchange.as_str().into()),
        );
    }
    arguments
}

/// A declaration RabbitMQ refused: a clash with what exists is the deployment's to fix (a
/// configuration error); anything else is RabbitMQ being unavailable.
fn refused(what: String, error: &lapin::Error) -> BrokerError {
    let clash = matches!(
        error.kind(),
        ErrorKind::ProtocolError(amqp)
            if *amqp.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
    );
    if clash {
        BrokerError::Config(format!(
            "rabbitmq: {what} exists with other settings (delete it, or declare it as it is): {error}"
        ))
    } else {
        unavailable(format!("could not declare {what}: {error}"))
    }
}
