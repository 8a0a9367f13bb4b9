//! RabbitMQ adapter (being written).
