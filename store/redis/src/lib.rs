//! The Redis adapter of Conveyor's cache port: job snapshots for reads (compare-and-set on
//! versions), idempotency keys, and the change feed that lets SSE and long-poll on any api replica
//! hear of changes made by any replica or worker. Needs Redis 7.0 or later.

mod cache;
mod claims;
mod feed;
mod keys;

pub use cache::RedisCache;
