use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Handler, JobContext, JobError};

/// Fails the first `times` attempts, then succeeds; with `permanent`, fails without retry.
pub struct Fail;

#[derive(Deserialize)]
struct Payload {
    times: u32,
    #[serde(default)]
    permanent: bool,
}

#[async_trait]
impl Handler for Fail {
    async fn run(&self, payload: Value, context: JobContext) -> Result<Value, JobError> {
        let Payload { times, permanent } = super::decode(payload)?;
        let attempt = context.attempt();
        if permanent {
            return Err(JobError::Permanent(format!(
                "attempt {attempt} failed permanently, as asked"
            )));
        }
        if attempt <= times {
            return Err(JobError::Retryable(format!(
                "attempt {attempt} of the first {times} failed, as asked"
            )));
        }
        Ok(json!({ "attempt": attempt }))
    }
}
