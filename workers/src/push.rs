//! Push types: the worker POSTs each attempt to the type's endpoint (see `conveyor-push`), and the
//! answer is the attempt's outcome.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use conveyor_push::{Push, PushOutcome};
use conveyor_schemas::{JobTypeInfo, SigningSecret};
use serde_json::{Value, json};

use crate::{Handler, JobContext, JobError};

/// The most one delivery may take by itself; the attempt's own time limit ends it sooner.
const DELIVERY_LIMIT: Duration = Duration::from_secs(60 * 60);

/// Runs the jobs of one push type by delivering them.
pub(crate) struct PushDelivery {
    push: Arc<Push>,
    endpoint: String,
    secret: SigningSecret,
}

impl PushDelivery {
    /// The delivery of `info`'s jobs, if it is a push type with its endpoint and secret.
    pub(crate) fn of(push: &Arc<Push>, info: &JobTypeInfo) -> Option<PushDelivery> {
        Some(PushDelivery {
            push: push.clone(),
            endpoint: info.endpoint.clone()?,
            secret: info.signing_secret.clone()?,
        })
    }
}

#[async_trait]
impl Handler for PushDelivery {
    async fn run(&self, payload: Value, context: JobContext) -> Result<Value, JobError> {
        let body = json!({
            "id": context.job_id(),
            "type": context.job_type(),
            "tenant": context.tenant(),
            "attempt": context.attempt(),
            "payload": payload,
        });
        // One id per attempt: a receiver that saw this id already is seeing a redelivery of it.
        let message_id = format!("{}.{}", context.job_id(), context.attempt());
        let body = serde_json::to_vec(&body).expect("JSON values always serialize");
        let outcome = self
            .push
            .deliver(
                &self.endpoint,
                &message_id,
                &self.secret,
                body,
                DELIVERY_LIMIT,
            )
            .await;
        match outcome {
            PushOutcome::Delivered(result) => Ok(result),
            PushOutcome::Retry { error, after: None } => Err(JobError::Retryable(error)),
            PushOutcome::Retry {
                error,
                after: Some(after),
            } => Err(JobError::RetryAfter(error, after)),
            PushOutcome::Failed(error) => Err(JobError::Permanent(error)),
        }
    }
}
