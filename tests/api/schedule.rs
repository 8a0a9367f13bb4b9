use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_job_due_later_waits_scheduled_and_never_starts_early() {
    let app = spawn_app().await;
    let run_at = Utc::now() + chrono::Duration::milliseconds(1500);
    let job = app
        .submit(json!({"type": "echo", "payload": {}, "run_at": run_at.to_rfc3339()}))
        .await;
    assert_eq!(job["status"], "scheduled");
    let id = job["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let seen = app.job(id).await;
    // A loaded machine may oversleep; what was read before the due time must be waiting.
    if Utc::now() < run_at {
        assert_eq!(seen["status"], "scheduled");
    }
    let done = app.wait_for(id, "succeeded", Duration::from_secs(5)).await;
    let started: DateTime<Utc> = done["started_at"].as_str().unwrap().parse().unwrap();
    assert!(started >= run_at, "started {started} before {run_at}");
}

#[tokio::test]
async fn a_job_due_in_the_past_runs_now() {
    let app = spawn_app().await;
    let run_at = Utc::now() - chrono::Duration::hours(1);
    let job = app
        .submit(json!({"type": "echo", "payload": {}, "run_at": run_at.to_rfc3339()}))
        .await;
    assert_eq!(job["status"], "queued");
    app.wait_for(
        job["id"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test]
async fn run_at_more_than_a_year_ahead_is_refused() {
    let app = spawn_app().await;
    let far = (Utc::now() + chrono::Duration::days(366)).to_rfc3339();
    let body = json!({"type": "echo", "payload": {}, "run_at": far});
    let refused = app
        .refused(
            &body,
            reqwest::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        )
        .await;
    assert_eq!(refused["field"], "run_at");
    let near = (Utc::now() + chrono::Duration::days(364)).to_rfc3339();
    let job = app
        .submit(json!({"type": "echo", "payload": {}, "run_at": near}))
        .await;
    assert_eq!(job["status"], "scheduled");
}
