//! Conveyor's message and payload contracts: the JSON Schemas in `schemas/json/` and the typed
//! Rust mirrors of them that every other crate shares.

mod catalog;
mod job;
pub mod lifecycle;

pub use catalog::{FieldError, JobTypeCatalog, JobTypeInfo, PayloadRejected};
pub use job::{Job, JobStatus};

/// The JSON Schema of [`Job`], checked against the Rust mirror in tests.
pub const JOB_SCHEMA: &str = include_str!("../json/job.v1.schema.json");
/// The JSON Schema of the `job.run.v1` command.
pub const RUN_JOB_SCHEMA: &str = include_str!("../json/messages/run-job.v1.schema.json");
