use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// Reads an SSE stream to its end and returns the job snapshots it carried.
pub async fn read_events(app: &TestApp, id: &str) -> Vec<Value> {
    let response = app
        .get(&format!("/v1/jobs/{id}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = String::new();
    let mut stream = response.bytes_stream();
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(chunk) = stream.next().await {
            body.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the stream did not end after a terminal state: {body}"
    );
    body.split("\n\n")
        .filter_map(|frame| frame.lines().find_map(|line| line.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

#[tokio::test]
async fn the_event_stream_shows_every_change_and_ends_after_the_terminal_one() {
    let app = spawn_app().await;
    let job = app
        .submit(json!({"type": "sleep", "payload": {"ms": 600}}))
        .await;
    let events = read_events(&app, job["id"].as_str().unwrap()).await;
    let statuses: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(*statuses.last().unwrap(), "succeeded", "{statuses:?}");
    assert!(statuses.contains(&"running"), "{statuses:?}");
    let versions: Vec<u64> = events
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "versions go forward: {versions:?}"
    );
    let progress: Vec<f64> = events
        .iter()
        .filter_map(|e| e["progress"].as_f64())
        .collect();
    assert!(
        progress.iter().any(|p| *p > 0.0 && *p < 1.0),
        "progress shows in the stream: {progress:?}"
    );
}

#[tokio::test]
async fn the_event_stream_of_a_finished_job_is_its_last_state() {
    let app = spawn_app().await;
    let job = app.submit(json!({"type": "echo", "payload": "hi"})).await;
    let id = job["id"].as_str().unwrap();
    app.wait_for(id, "succeeded", Duration::from_secs(5)).await;
    let events = read_events(&app, id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["result"], "hi");
}
