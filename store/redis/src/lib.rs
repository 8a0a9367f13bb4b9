//! The Redis adapter of Conveyor's cache port: job snapshots for reads (compare-and-set on
//! versions), idempotency keys, tenants' unfinished jobs, and the change feed that lets SSE and
//! long-poll on any api replica hear of changes made by any replica or worker; and rate limits
//! that every replica shares. Needs Redis 7.0 or later.

mod cache;
mod claims;
mod feed;
mod keys;
mod limiter;

pub use cache::RedisCache;
pub use limiter::RedisRateLimiter;
