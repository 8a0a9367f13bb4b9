//! The metrics of job changes that more than one kind of process records: Conveyor's workers and
//! the api, for the attempts of HTTP workers.

use std::sync::LazyLock;

use conveyor_schemas::Job;
use prometheus::{IntCounterVec, register_int_counter_vec};

static FINISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "conveyor_jobs_finished_total",
        "Attempts finished, by job type and outcome (succeeded, retrying, failed, cancelled).",
        &["type", "outcome"]
    )
    .unwrap()
});

/// Counts the attempt that `recorded` (the job as its outcome left it) ended.
pub fn attempt_finished(recorded: &Job) {
    FINISHED
        .with_label_values(&[&recorded.job_type, recorded.status.as_str()])
        .inc();
}
