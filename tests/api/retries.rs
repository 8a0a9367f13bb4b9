use std::time::Duration;

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_job_that_fails_twice_succeeds_on_its_third_attempt_within_seconds() {
    let app = spawn_app().await;
    let done = app
        .run_until(
            json!({"type": "fail", "payload": {"times": 2}}),
            "succeeded",
        )
        .await;
    assert_eq!(done["attempts"], 3);
    assert_eq!(done["result"], json!({"attempt": 3}));
    assert!(done["error"].is_null());
}

#[tokio::test]
async fn a_job_out_of_attempts_fails_with_its_last_error() {
    let app = spawn_app().await;
    let done = app
        .run_until(
            json!({"type": "fail", "payload": {"times": 5}, "max_attempts": 2}),
            "failed",
        )
        .await;
    assert_eq!(done["attempts"], 2);
    assert!(
        done["error"].as_str().unwrap().contains("attempt 2"),
        "{done}"
    );
    assert!(done["finished_at"].is_string());
}

#[tokio::test]
async fn a_permanent_error_fails_without_retry() {
    let app = spawn_app().await;
    let done = app
        .run_until(
            json!({"type": "fail", "payload": {"times": 1, "permanent": true}, "max_attempts": 5}),
            "failed",
        )
        .await;
    assert_eq!(done["attempts"], 1);
}

#[tokio::test]
async fn an_attempt_over_its_timeout_is_retried_then_failed() {
    let app = spawn_app().await;
    let done = app
        .run_until(
            json!({"type": "sleep", "payload": {"ms": 5000}, "timeout_ms": 100, "max_attempts": 2}),
            "failed",
        )
        .await;
    assert_eq!(done["attempts"], 2);
    assert!(
        done["error"].as_str().unwrap().contains("timed out"),
        "{done}"
    );
}

#[tokio::test]
async fn a_retrying_job_shows_retrying_with_its_next_run_time() {
    let app =
        crate::helpers::spawn_app_with(&["--retry-base-ms", "1500", "--retry-max-ms", "1500"])
            .await;
    let job = app
        .submit(json!({"type": "fail", "payload": {"times": 1}}))
        .await;
    let retrying = app
        .wait_for(
            job["id"].as_str().unwrap(),
            "retrying",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(retrying["attempts"], 1);
    assert!(retrying["run_at"].is_string());
    assert!(retrying["error"].is_string());
    app.wait_for(
        job["id"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test]
async fn a_failed_job_is_dead_lettered() {
    let app = spawn_app().await;
    app.run_until(
        json!({"type": "fail", "payload": {"times": 1, "permanent": true}}),
        "failed",
    )
    .await;
    let series = format!(
        "conveyor_queue_depth{{topic=\"{}dead-letter\"}}",
        app.topic_prefix
    );
    let depth = app.metric_reaches(&series, 1.0).await;
    assert_eq!(depth, 1.0, "the failed job waits on the dead-letter topic");
}

#[tokio::test]
async fn no_more_attempts_run_at_once_than_the_concurrency_allows() {
    let app = crate::helpers::spawn_app_with(&["--concurrency", "2"]).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let job = app
            .submit(json!({"type": "sleep", "payload": {"ms": 300}}))
            .await;
        ids.push(job["id"].as_str().unwrap().to_owned());
    }
    // Counted from when each attempt started and ended, not from a look at each job in turn: a
    // look could see one job still running and, a moment later, the job that took its slot.
    let mut edges = Vec::new();
    for id in &ids {
        let job = app.wait_for(id, "succeeded", Duration::from_secs(20)).await;
        let at = |field: &str| {
            chrono::DateTime::parse_from_rfc3339(job[field].as_str().unwrap()).unwrap()
        };
        edges.push((at("started_at"), 1));
        edges.push((at("finished_at"), -1));
    }
    // An attempt that ended as another started at the same instant did not overlap it.
    edges.sort();
    let mut running = 0;
    let mut most_running = 0;
    for (_, change) in edges {
        running += change;
        most_running = most_running.max(running);
    }
    assert_eq!(most_running, 2, "two at a time, and never more");
}
