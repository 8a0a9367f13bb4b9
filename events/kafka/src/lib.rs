//! Kafka adapter (being written).
