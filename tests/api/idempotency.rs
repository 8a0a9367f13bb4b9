use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, problem, spawn_app};

async fn post_with_key(app: &TestApp, body: &Value, key: &str) -> (StatusCode, Value) {
    let response = app
        .post_job(body)
        .header("idempotency-key", key)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// Once `job` has run, it is the tenant's only job.
async fn only_job_is(app: &TestApp, job: &Value) {
    let id = job["id"].as_str().unwrap();
    app.wait_for(id, "succeeded", std::time::Duration::from_secs(5))
        .await;
    assert_eq!(app.listed("/v1/jobs", 1).await, [id]);
}

#[tokio::test]
async fn the_same_key_and_body_return_the_same_job() {
    let app = spawn_app().await;
    let body = json!({"type": "echo", "payload": {"n": 1}});
    let (status, first) = post_with_key(&app, &body, "order-42").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, second) = post_with_key(&app, &body, "order-42").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["id"], second["id"]);
    only_job_is(&app, &first).await;
}

#[tokio::test]
async fn the_same_key_with_another_body_is_409_and_no_second_job() {
    let app = spawn_app().await;
    let (_, first) = post_with_key(&app, &json!({"type": "echo", "payload": {"n": 1}}), "k").await;
    let response = app
        .post_job(&json!({"type": "echo", "payload": {"n": 2}}))
        .header("idempotency-key", "k")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::CONFLICT, "idempotency_key_reused").await;
    only_job_is(&app, &first).await;
}

#[tokio::test]
async fn concurrent_retries_with_one_key_make_one_job() {
    let app = spawn_app().await;
    let body = json!({"type": "echo", "payload": {"n": 7}});
    let requests = (0..20).map(|_| {
        app.post_job(&body)
            .header("idempotency-key", "burst")
            .send()
    });
    let responses = futures_util::future::join_all(requests).await;
    let mut ids = std::collections::HashSet::new();
    let mut statuses = Vec::new();
    for response in responses {
        let response = response.unwrap();
        statuses.push(response.status().as_u16());
        let job: Value = response.json().await.unwrap();
        ids.insert(job["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    statuses.sort();
    let mut expected = vec![200; 19];
    expected.push(202);
    assert_eq!(statuses, expected, "one acceptance, nineteen replays");
}

#[tokio::test]
async fn keys_belong_to_their_tenant() {
    let app = spawn_app().await;
    let body = json!({"type": "echo", "payload": {}});
    let (_, mine) = post_with_key(&app, &body, "shared").await;
    let other = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(app.token_for("globex"))
        .header("idempotency-key", "shared")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::ACCEPTED);
    let theirs: Value = other.json().await.unwrap();
    assert_ne!(mine["id"], theirs["id"]);
}
