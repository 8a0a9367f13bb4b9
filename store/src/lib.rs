//! Where jobs live: the SQL store (sea-orm, PostgreSQL or SQLite), the cache (snapshots,
//! idempotency keys, change fan-out) and the [`Ledger`] that applies every state change to both.

mod batch;
pub mod cache;
mod concurrency;
mod db;
mod entity;
mod error;
mod job_types;
mod jobs;
mod journal;
mod ledger;
mod limits;
pub mod metrics;
mod partitions;
mod schedule;
mod watchers;

pub use cache::{Cache, CacheKind, IdempotencyClaim, MemoryCache};
pub use concurrency::{give_back_running_place, take_running_place};
pub use db::{Database, DatabaseKind, redact};
pub use error::StoreError;
pub use job_types::{JobTypeStore, LiveCatalog};
pub use jobs::{JobPage, JobQuery, JobStore};
pub use journal::SqlJournal;
pub use ledger::{Change, Ledger};
pub use limits::{MemoryRateLimiter, Rate, RateLimiter, Verdict, gcra};
pub use schedule::SqlSchedule;
pub use watchers::JobWatch;
