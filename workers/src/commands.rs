//! The commands that a recorded change sends on: the job's next attempt, held by the broker until
//! it is due, or the job itself to the dead-letter topic once it failed for good.

use chrono::{DateTime, Utc};
use conveyor_events::{BrokerError, Lane, Queues, dead_letter, hold_until};
use conveyor_schemas::{Job, JobStatus};
use conveyor_store::LiveCatalog;

/// Sends what `recorded` (a change just made to the job by a worker or the rescuer) calls for; a
/// next attempt on `lane` of its type's queue (which may have changed since the last attempt).
pub(crate) async fn follow_up(
    queues: &Queues,
    catalog: &LiveCatalog,
    lane: Lane,
    recorded: &Job,
) -> Result<(), BrokerError> {
    conveyor_store::metrics::attempt_finished(recorded);
    match recorded.status {
        JobStatus::Retrying => {
            let at = recorded.run_at.unwrap_or_else(Utc::now);
            hold(queues, catalog, lane, recorded, at).await
        }
        JobStatus::Failed => {
            tracing::warn!(
                job_id = %recorded.id,
                error = recorded.error.as_deref().unwrap_or_default(),
                attempts = recorded.attempts,
                "Job failed; dead-lettering it."
            );
            dead_letter(queues, recorded).await
        }
        _ => Ok(()),
    }
}

/// Sends the job's command on `lane` of its type's queue, to be delivered at `at`.
pub(crate) async fn hold(
    queues: &Queues,
    catalog: &LiveCatalog,
    lane: Lane,
    job: &Job,
    at: DateTime<Utc>,
) -> Result<(), BrokerError> {
    let queue = catalog.current().queue_of(&job.job_type).to_owned();
    hold_until(queues, &queue, lane, job, at).await
}
