use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// Where a job is in its life. `succeeded`, `failed` and `cancelled` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Scheduled,
    Queued,
    Running,
    Retrying,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Scheduled,
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Retrying,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    /// Waiting for a worker: these can be cancelled at once, without asking a handler.
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            JobStatus::Scheduled | JobStatus::Queued | JobStatus::Retrying
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Scheduled => "scheduled",
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Retrying => "retrying",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// A job: what clients read, what the cache and store keep, and what commands carry.
///
/// `version` grows by one with every change; a snapshot only ever replaces an older one, and a
/// terminal snapshot is never replaced, so updates arriving out of order cannot move a job
/// backwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// UUIDv7: ids sort by creation time.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub job_type: String,
    pub status: JobStatus,
    pub payload: Value,
    /// The handler's result, once `succeeded`.
    pub result: Option<Value>,
    /// The last attempt's error message.
    pub error: Option<String>,
    /// Attempts started so far.
    pub attempts: u32,
    pub max_attempts: u32,
    /// Fraction done, from 0 to 1, as the handler reports it.
    pub progress: Option<f64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the job (or its next retry) becomes due.
    pub run_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Per-attempt time limit; the worker default when absent.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Grows by one with every change; the `ETag` of the job.
    pub version: u64,
    pub tenant: String,
    /// A cancel was asked for while the job was running; its handler has been told.
    pub cancel_requested: bool,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[cfg(any(test, feature = "fixtures"))]
impl Job {
    /// For tests, which change what they need: a queued `echo` job of tenant `acme` with an empty
    /// payload, made now, version 1, three attempts allowed.
    pub fn fixture() -> Job {
        let now = Utc::now();
        Job {
            id: Uuid::now_v7(),
            job_type: "echo".into(),
            status: JobStatus::Queued,
            payload: Value::Object(Default::default()),
            result: None,
            error: None,
            attempts: 0,
            max_attempts: 3,
            progress: None,
            created_at: now,
            updated_at: now,
            run_at: None,
            started_at: None,
            finished_at: None,
            timeout_ms: None,
            version: 1,
            tenant: "acme".into(),
            cancel_requested: false,
            idempotency_key: None,
        }
    }
}

impl Job {
    /// The job as it will be after a change: one version newer, stamped now.
    pub fn next(&self) -> Job {
        let mut next = self.clone();
        next.version = self.version + 1;
        next.updated_at = Utc::now();
        next
    }

    /// Whether `self` may replace `current`: it must be newer, and a terminal job is final.
    pub fn supersedes(&self, current: &Job) -> bool {
        self.version > current.version && !current.status.is_terminal()
    }

    /// A strong validator for HTTP caching: changes exactly when the job does.
    pub fn etag(&self) -> String {
        format!("\"{}.{}\"", self.id.simple(), self.version)
    }
}
