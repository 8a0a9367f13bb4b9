use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{problem, spawn_app};

#[tokio::test]
async fn the_same_key_and_body_return_the_same_job() {
    let app = spawn_app().await;
    let body = json!({"type": "echo", "payload": {"n": 1}});
    let first = app
        .post_job(&body)
        .header("idempotency-key", "order-42")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let second = app
        .post_job(&body)
        .header("idempotency-key", "order-42")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    app.wait_for(
        first["id"].as_str().unwrap(),
        "succeeded",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        app.listed("/v1/jobs", 1).await,
        [first["id"].as_str().unwrap()]
    );
}

#[tokio::test]
async fn the_same_key_with_another_body_is_409_and_no_second_job() {
    let app = spawn_app().await;
    let first: Value = app
        .post_job(&json!({"type": "echo", "payload": {"n": 1}}))
        .header("idempotency-key", "k")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = app
        .post_job(&json!({"type": "echo", "payload": {"n": 2}}))
        .header("idempotency-key", "k")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::CONFLICT, "idempotency_key_reused").await;
    app.wait_for(
        first["id"].as_str().unwrap(),
        "succeeded",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        app.listed("/v1/jobs", 1).await,
        [first["id"].as_str().unwrap()]
    );
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
    let mine: Value = app
        .post_job(&body)
        .header("idempotency-key", "shared")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
