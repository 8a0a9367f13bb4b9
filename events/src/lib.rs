//! Message contracts and the broker port.
//!
//! The rest of Conveyor sees a [`Broker`]: `publish` returns only once the broker holds the
//! messages durably, and a [`Subscription`] hands out [`Delivery`]s that are redelivered unless
//! acknowledged. Adapters: the in-process [`MemoryBroker`] (durable through a [`Journal`]);
//! Kafka (`conveyor-kafka`) and RabbitMQ (`conveyor-amqp`) plug in behind the same trait, with
//! delays held in a [`Schedule`] by [`Scheduled`].

mod broker;
mod command;
mod journal;
mod memory;
mod queues;
mod schedule;
mod topology;
mod url;

pub use broker::{Acknowledger, Broker, BrokerError, Delivery, Outgoing, Subscription, due_millis};
pub use command::{Command, CommandError, dead_letter, hold_until};
pub use journal::{Journal, JournaledMessage};
pub use memory::MemoryBroker;
pub use queues::Queues;
pub use schedule::{HeldMessage, Schedule, Scheduled};
pub use topology::Topology;
pub use url::{BrokerKind, Lane, Topics};
