//! Built-in job types for demos, tests and benchmarks. Their payload schemas live in
//! `schemas/json/job-types/`.

mod echo;
mod fail;
mod sleep;

pub use echo::Echo;
pub use fail::Fail;
pub use sleep::Sleep;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::JobError;

/// The API validated the payload against the type's schema; a payload that still does not decode
/// cannot get better by retrying.
fn decode<T: DeserializeOwned>(payload: Value) -> Result<T, JobError> {
    serde_json::from_value(payload)
        .map_err(|error| JobError::Permanent(format!("payload does not decode: {error}")))
}
