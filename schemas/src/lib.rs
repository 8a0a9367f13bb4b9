//! Conveyor's message and payload contracts: the JSON Schemas in `schemas/json/` and the typed
//! Rust mirrors of them that every other crate shares.

mod backoff;
mod catalog;
mod job;
mod job_type;
pub mod lifecycle;
mod signing;

pub use backoff::Backoff;
pub use catalog::{FieldError, JobTypeCatalog, PayloadRejected, is_built_in};
pub use job::{Job, JobStatus};
pub use job_type::{
    BackoffSpec, DEFAULT_QUEUE, JobMode, JobTypeInfo, JobTypeSpec, MAX_ATTEMPTS_LIMIT,
    TIMEOUT_MS_LIMIT, taken_by_built_in, valid_name,
};
pub use signing::{SecretError, SigningSecret};

/// The JSON Schema of [`Job`], checked against the Rust mirror in tests.
pub const JOB_SCHEMA: &str = include_str!("../json/job.v1.schema.json");
/// The JSON Schema of the `job.run.v1` command.
pub const RUN_JOB_SCHEMA: &str = include_str!("../json/messages/run-job.v1.schema.json");
