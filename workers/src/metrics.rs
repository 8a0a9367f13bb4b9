use std::sync::LazyLock;

use prometheus::{
    HistogramVec, IntCounter, IntCounterVec, IntGauge, register_histogram_vec,
    register_int_counter, register_int_counter_vec, register_int_gauge,
};

pub(crate) static RUN_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "conveyor_job_run_seconds",
        "How long handlers ran, by job type.",
        &["type"],
        prometheus::exponential_buckets(0.0005, 4.0, 12).unwrap()
    )
    .unwrap()
});

pub(crate) static QUEUE_WAIT_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "conveyor_job_queue_wait_seconds",
        "From when an attempt was due to when a worker started it, by job type.",
        &["type"],
        prometheus::exponential_buckets(0.0005, 4.0, 12).unwrap()
    )
    .unwrap()
});

pub(crate) static RUNNING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "conveyor_jobs_running",
        "Attempts running in this process now."
    )
    .unwrap()
});

pub(crate) static RESCUED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "conveyor_jobs_rescued_total",
        "Attempts whose worker was lost, ended by the rescuer, by job type.",
        &["type"]
    )
    .unwrap()
});

pub(crate) static PRUNED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "conveyor_jobs_pruned_total",
        "Finished jobs deleted from the store once past the retention period."
    )
    .unwrap()
});
