//! The commands that a recorded change sends on: the job's next attempt, held by the broker until
//! it is due, or the job itself to the dead-letter topic once it failed for good.

use chrono::{DateTime, Utc};
use conveyor_events::{Broker, BrokerError, Command, Lane, Outgoing, Topics};
use conveyor_schemas::{Job, JobStatus};

use crate::metrics;

/// Sends what `recorded` (a change just made to the job by a worker or the rescuer) calls for; a
/// next attempt on `lane`.
pub(crate) async fn follow_up(
    broker: &dyn Broker,
    topics: &Topics,
    lane: Lane,
    recorded: &Job,
) -> Result<(), BrokerError> {
    metrics::FINISHED
        .with_label_values(&[&recorded.job_type, recorded.status.as_str()])
        .inc();
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

pub(crate) async fn dead_letter(
    broker: &dyn Broker,
    topics: &Topics,
    job: &Job,
) -> Result<(), BrokerError> {
    let dead = Outgoing::now(job.id.to_string(), run_command(job));
    broker.publish(&topics.dead_letter(), vec![dead]).await
}

/// Publishes the job's command on `lane`, to be delivered at `at`.
pub(crate) async fn hold_until(
    broker: &dyn Broker,
    topics: &Topics,
    lane: Lane,
    job: &Job,
    at: DateTime<Utc>,
) -> Result<(), BrokerError> {
    let held = Outgoing::at(job.id.to_string(), run_command(job), at);
    broker.publish(&topics.lane(lane), vec![held]).await
}

fn run_command(job: &Job) -> Vec<u8> {
    Command::RunJob { job: job.clone() }.encode()
}
