use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{problem, spawn_app};

#[tokio::test]
async fn a_waiting_job_is_cancelled_at_once_and_never_runs() {
    let app = spawn_app().await;
    let run_at = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let job = app
        .submit(json!({"type": "echo", "payload": {}, "run_at": run_at}))
        .await;
    let id = job["id"].as_str().unwrap();
    let response = app.delete(&format!("/v1/jobs/{id}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = app.job(id).await;
    assert_eq!(after["status"], "cancelled");
    assert_eq!(after["attempts"], 0, "a cancelled job never starts");
}

#[tokio::test]
async fn a_running_job_is_asked_to_stop_and_ends_cancelled() {
    let app = spawn_app().await;
    let job = app
        .submit(json!({"type": "sleep", "payload": {"ms": 30000}}))
        .await;
    let id = job["id"].as_str().unwrap();
    app.wait_for(id, "running", Duration::from_secs(5)).await;
    let response = app.delete(&format!("/v1/jobs/{id}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let requested: Value = response.json().await.unwrap();
    assert_eq!(requested["cancel_requested"], true);
    let done = app.wait_for(id, "cancelled", Duration::from_secs(5)).await;
    assert!(done["finished_at"].is_string());
}

#[tokio::test]
async fn a_finished_job_cannot_be_cancelled() {
    let app = spawn_app().await;
    let job = app.submit(json!({"type": "echo", "payload": {}})).await;
    let id = job["id"].as_str().unwrap();
    app.wait_for(id, "succeeded", Duration::from_secs(5)).await;
    let response = app.delete(&format!("/v1/jobs/{id}")).send().await.unwrap();
    problem(response, StatusCode::CONFLICT, "job_not_cancellable").await;
    assert_eq!(app.job(id).await["status"], "succeeded");
}
