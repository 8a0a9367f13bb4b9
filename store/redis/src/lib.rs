//! Redis cache adapter (being written).
