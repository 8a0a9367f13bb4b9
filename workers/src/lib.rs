//! The worker runtime: consume commands, run handlers with bounded concurrency, timeouts,
//! cancellation and retries, and record every outcome exactly once through the ledger. Plus the
//! built-in job handlers.

mod attempt;
pub mod builtin;
mod commands;
mod consumed;
mod duty;
mod fair;
mod handler;
mod metrics;
mod pool;
mod pruner;
mod push;
mod recorder;
mod registry;
mod rescuer;

pub use consumed::QueueChoice;
pub use conveyor_push::{OutboundPolicy, Push};
pub use conveyor_schemas::Backoff;
pub use handler::{Handler, JobContext, JobError};
pub use pool::{WorkerPool, WorkerSettings};
pub use pruner::Pruner;
pub use recorder::Recorder;
pub use registry::Registry;
pub use rescuer::Rescuer;
