use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use conveyor_schemas::Job;
use conveyor_schemas::lifecycle::Event;
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
    /// Worth trying again, not before the delay given (an endpoint's `Retry-After`) rather than
    /// after a backoff, while attempts remain.
    #[error("{0}")]
    RetryAfter(String, Duration),
}

/// Progress reports of one attempt closer together than this are dropped: each one recorded is a
/// full change of the job (cache, store, event streams), and a handler may report every tick.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// What a handler knows of the attempt it runs.
pub struct JobContext {
    job: Job,
    ledger: Ledger,
    cancel: CancellationToken,
    /// When progress was last recorded.
    last_progress: Mutex<Option<Instant>>,
}

/// Whether a progress report made at `now` is recorded, given when the last one was.
fn progress_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|last| now.duration_since(last) >= PROGRESS_INTERVAL)
}

impl JobContext {
    pub(crate) fn new(job: Job, ledger: Ledger, cancel: CancellationToken) -> JobContext {
        JobContext {
            job,
            ledger,
            cancel,
            last_progress: Mutex::default(),
        }
    }

    pub fn job_id(&self) -> Uuid {
        self.job.id
    }

    pub fn job_type(&self) -> &str {
        &self.job.job_type
    }

    /// The tenant that submitted the job.
    pub fn tenant(&self) -> &str {
        &self.job.tenant
    }

    /// 1 for the first attempt.
    pub fn attempt(&self) -> u32 {
        self.job.attempts
    }

    /// Reports the fraction done (0 to 1); it shows in the job's `progress` and its event stream,
    /// at most every half second (reports in between are dropped). A report that cannot be
    /// recorded is logged and dropped: progress is advisory.
    pub async fn progress(&self, fraction: f64) {
        {
            let now = Instant::now();
            let mut last = self.last_progress.lock().expect("no panic holds the lock");
            if !progress_due(*last, now) {
                return;
            }
            *last = Some(now);
        }
        let progress = Event::Progress {
            attempt: self.job.attempts,
            fraction,
        };
        if let Err(error) = self.ledger.apply(&self.job, &progress).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_recorded_at_first_and_then_at_most_every_interval() {
        let start = Instant::now();
        assert!(progress_due(None, start));
        assert!(!progress_due(Some(start), start + PROGRESS_INTERVAL / 2));
        assert!(progress_due(Some(start), start + PROGRESS_INTERVAL));
    }
}
