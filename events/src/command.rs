use chrono::{DateTime, Utc};
use conveyor_schemas::Job;
use serde::{Deserialize, Serialize};

use crate::{BrokerError, Lane, Outgoing, Queues};

/// A command on the jobs topic. Tagged and versioned so that old and new workers can share a
/// topic during a rolling upgrade; see `schemas/json/messages/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Command {
    /// Run the job if it is due, or hold it until `job.run_at`.
    #[serde(rename = "job.run.v1")]
    RunJob { job: Job },
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable command: {0}")]
pub struct CommandError(#[from] serde_json::Error);

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("commands always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, CommandError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// Publishes a job that failed for good to the dead-letter topic.
pub async fn dead_letter(queues: &Queues, job: &Job) -> Result<(), BrokerError> {
    let dead = Outgoing::now(job.id.to_string(), run_command(job));
    queues
        .broker()
        .publish(&queues.topics().dead_letter(), vec![dead])
        .await
}

/// Publishes the job's command on `lane` of `queue`, to be delivered at `at`.
pub async fn hold_until(
    queues: &Queues,
    queue: &str,
    lane: Lane,
    job: &Job,
    at: DateTime<Utc>,
) -> Result<(), BrokerError> {
    let held = Outgoing::at(job.id.to_string(), run_command(job), at);
    queues.publish(queue, lane, vec![held]).await
}

fn run_command(job: &Job) -> Vec<u8> {
    Command::RunJob { job: job.clone() }.encode()
}
