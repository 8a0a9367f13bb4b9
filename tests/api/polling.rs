use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{problem, spawn_app};

#[tokio::test]
async fn a_matching_etag_gets_304_without_a_body() {
    let app = spawn_app().await;
    let job = app.submit(json!({"type": "echo", "payload": 1})).await;
    let id = job["id"].as_str().unwrap();
    app.wait_for(id, "succeeded", Duration::from_secs(5)).await;

    let first = app.get(&format!("/v1/jobs/{id}")).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let cache_control = first.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cache_control.contains("max-age"),
        "terminal jobs may be cached: {cache_control}"
    );

    let again = app
        .get(&format!("/v1/jobs/{id}"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(
        again.headers()["cache-control"].to_str().unwrap(),
        cache_control
    );
    assert!(again.bytes().await.unwrap().is_empty());

    let listed = app
        .get(&format!("/v1/jobs/{id}"))
        .header("if-none-match", format!("\"other\", W/{etag}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.status(),
        StatusCode::NOT_MODIFIED,
        "any ETag of the list matches"
    );

    let stale = app
        .get(&format!("/v1/jobs/{id}"))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_unfinished_job_must_be_revalidated() {
    let app = spawn_app().await;
    let job = app
        .submit(json!({"type": "sleep", "payload": {"ms": 2000}}))
        .await;
    let response = app
        .get(&format!("/v1/jobs/{}", job["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    let cache_control = response.headers()["cache-control"].to_str().unwrap();
    assert!(cache_control.contains("no-cache"), "{cache_control}");
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_the_job_changes() {
    let app = spawn_app().await;
    let job = app
        .submit(json!({"type": "sleep", "payload": {"ms": 700}}))
        .await;
    let id = job["id"].as_str().unwrap();
    let running = app.wait_for(id, "running", Duration::from_secs(5)).await;
    // Wait for the last snapshot before completion, then long-poll on its ETag.
    let mut etag;
    let mut current = running;
    loop {
        let response = app.get(&format!("/v1/jobs/{id}")).send().await.unwrap();
        etag = response.headers()["etag"].to_str().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        if body["status"] != "running" {
            current = body;
            break;
        }
        let started = Instant::now();
        let changed = app
            .get(&format!("/v1/jobs/{id}?wait=20"))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), StatusCode::OK);
        assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the long-poll waited for its deadline"
        );
        let body: Value = changed.json().await.unwrap();
        assert!(body["version"].as_u64() > current["version"].as_u64());
        current = body;
        if current["status"] == "succeeded" {
            break;
        }
    }
    assert_eq!(current["status"], "succeeded");
}

/// Long-polls a finished job (which will not change) with its own ETag; returns the status and
/// how long the answer took.
async fn long_poll_finished_job(
    app: &crate::helpers::TestApp,
    wait: u64,
) -> (StatusCode, Duration) {
    let job = app
        .run_until(json!({"type": "echo", "payload": {}}), "succeeded")
        .await;
    let id = job["id"].as_str().unwrap();
    let etag = app.etag(id).await;
    let started = Instant::now();
    let response = app
        .get(&format!("/v1/jobs/{id}?wait={wait}"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    (response.status(), started.elapsed())
}

#[tokio::test]
async fn a_long_poll_without_change_answers_304_after_the_wait() {
    let app = spawn_app().await;
    let (status, took) = long_poll_finished_job(&app, 1).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(took >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_long_poll_is_capped_by_the_server() {
    let app = crate::helpers::spawn_app_with(&["--max-wait-secs", "1"]).await;
    let (status, took) = long_poll_finished_job(&app, 3600).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(took < Duration::from_secs(5));
}

#[tokio::test]
async fn a_bad_wait_is_400_naming_it() {
    let app = spawn_app().await;
    let job = app.submit(json!({"type": "echo", "payload": {}})).await;
    let response = app
        .get(&format!(
            "/v1/jobs/{}?wait=soon",
            job["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST, "invalid_query").await;
    assert_eq!(body["field"], "wait");
}
