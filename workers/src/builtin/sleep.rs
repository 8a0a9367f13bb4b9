use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Handler, JobContext, JobError};

/// Sleeps for `ms`, reporting progress along the way; stops early when cancelled.
pub struct Sleep;

#[derive(Deserialize)]
struct Payload {
    ms: u64,
}

/// Progress is reported about twenty times a sleep, but not more often than this.
const MIN_REPORT_INTERVAL: Duration = Duration::from_millis(100);
const MAX_REPORT_INTERVAL: Duration = Duration::from_secs(1);

#[async_trait]
impl Handler for Sleep {
    async fn run(&self, payload: Value, context: JobContext) -> Result<Value, JobError> {
        let Payload { ms } = super::decode(payload)?;
        let total = Duration::from_millis(ms);
        let step = (total / 20).clamp(MIN_REPORT_INTERVAL, MAX_REPORT_INTERVAL);
        let mut slept = Duration::ZERO;
        while slept < total {
            let nap = step.min(total - slept);
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = context.cancelled() => return Err(JobError::Permanent("cancelled".into())),
            }
            slept += nap;
            if slept < total {
                context
                    .progress(slept.as_secs_f64() / total.as_secs_f64())
                    .await;
            }
        }
        Ok(json!({ "slept_ms": ms }))
    }
}
