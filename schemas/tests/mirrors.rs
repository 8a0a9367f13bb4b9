//! The Rust mirrors serialize to JSON that their checked-in schemas accept.

use chrono::Utc;
use conveyor_schemas::{JOB_SCHEMA, Job, JobStatus};
use serde_json::{Value, json};
use uuid::Uuid;

fn sample_job() -> Job {
    let now = Utc::now();
    Job {
        id: Uuid::now_v7(),
        job_type: "sleep".into(),
        status: JobStatus::Running,
        payload: json!({"ms": 5}),
        result: None,
        error: Some("boom".into()),
        attempts: 1,
        max_attempts: 3,
        progress: Some(0.5),
        created_at: now,
        updated_at: now,
        run_at: None,
        started_at: Some(now),
        finished_at: None,
        timeout_ms: Some(1000),
        version: 3,
        tenant: "acme".into(),
        cancel_requested: false,
        idempotency_key: None,
    }
}

#[test]
fn a_serialized_job_satisfies_the_job_schema() {
    let schema: Value = serde_json::from_str(JOB_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let job = serde_json::to_value(sample_job()).unwrap();
    let errors: Vec<String> = validator.iter_errors(&job).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn every_status_in_the_schema_round_trips() {
    let schema: Value = serde_json::from_str(JOB_SCHEMA).unwrap();
    let listed: Vec<&str> = schema["properties"]["status"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mirrored: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(listed, mirrored);
    for status in JobStatus::ALL {
        assert_eq!(JobStatus::parse(status.as_str()), Some(status));
    }
}
