//! The commands that a recorded change sends on: the job's next attempt, held by the broker until
//! it is due, or the job itself to the dead-letter topic once it failed for good.

use chrono::Utc;
use conveyor_events::{Broker, BrokerError, Lane, Topics, dead_letter, hold_until};
use conveyor_schemas::{Job, JobStatus};

/// Sends what `recorded` (a change just made to the job by a worker or the rescuer) calls for; a
/// next attempt on `lane`.
pub(crate) async fn follow_up(
    broker: &dyn Broker,
    topics: &Topics,
    lane: Lane,
    recorded: &Job,
) -> Result<(), BrokerError> {
    conveyor_store::metrics::attempt_finished(recorded);
    match recorded.status {
        JobStatus::Retrying => {
            let at = recorded.run_at.unwrap_or_else(Utc::now);
            hold_until(broker, topics, lane, recorded, at).await
        }
        JobStatus::Failed => {
            tracing::warn!(
                job_id = %recorded.id,
                error = recorded.error.as_deref().unwrap_or_default(),
                attempts = recorded.attempts,
                "Job failed; dead-lettering it."
            );
            dead_letter(broker, topics, recorded).await
        }
        _ => Ok(()),
    }
}
