use conveyor_schemas::Job;
use serde::{Deserialize, Serialize};

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
