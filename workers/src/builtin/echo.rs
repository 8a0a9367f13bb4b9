use async_trait::async_trait;
use serde_json::Value;

use crate::{Handler, JobContext, JobError};

/// Returns the payload as the result.
pub struct Echo;

#[async_trait]
impl Handler for Echo {
    async fn run(&self, payload: Value, _context: JobContext) -> Result<Value, JobError> {
        Ok(payload)
    }
}
