use async_trait::async_trait;
use conveyor_schemas::{Job, JobStatus};
use conveyor_store::Ledger;
use serde_json::Value;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use uuid::Uuid;

/// Runs one job type: payload in, result or error out.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn run(&self, payload: Value, context: JobContext) -> Result<Value, JobError>;
}

/// How an attempt failed, which decides whether there is another.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// Worth trying again, after a backoff, while attempts remain.
    #[error("{0}")]
    Retryable(String),
    /// Trying again cannot help: the job fails now.
    #[error("{0}")]
    Permanent(String),
}

/// What a handler knows of the attempt it runs.
pub struct JobContext {
    job: Job,
    ledger: Ledger,
    cancel: CancellationToken,
}

impl JobContext {
    pub(crate) fn new(job: Job, ledger: Ledger, cancel: CancellationToken) -> JobContext {
        JobContext {
            job,
            ledger,
            cancel,
        }
    }

    pub fn job_id(&self) -> Uuid {
        self.job.id
    }

    /// 1 for the first attempt.
    pub fn attempt(&self) -> u32 {
        self.job.attempts
    }

    /// Reports the fraction done (0 to 1); it shows in the job's `progress` and its event stream.
    /// A report that cannot be recorded is logged and dropped: progress is advisory.
    pub async fn progress(&self, fraction: f64) {
        let fraction = fraction.clamp(0.0, 1.0);
        let attempt = self.job.attempts;
        let recorded = self
            .ledger
            .update(&self.job, |current| {
                (current.status == JobStatus::Running && current.attempts == attempt).then(|| Job {
                    progress: Some(fraction),
                    ..current.clone()
                })
            })
            .await;
        if let Err(error) = recorded {
            tracing::warn!(job_id = %self.job.id, %error, "Could not record progress.");
        }
    }

    /// Resolves when the client asked to cancel this job.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}
