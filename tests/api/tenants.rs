use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ok_json, problem, spawn_app};

#[tokio::test]
async fn another_tenants_job_is_invisible() {
    let app = spawn_app().await;
    let job = app
        .submit(json!({"type": "sleep", "payload": {"ms": 2000}}))
        .await;
    let id = job["id"].as_str().unwrap();
    let intruder = app.token_for("globex");

    for (method, path) in [
        ("GET", format!("/v1/jobs/{id}")),
        ("GET", format!("/v1/jobs/{id}/events")),
        ("DELETE", format!("/v1/jobs/{id}")),
    ] {
        let request = match method {
            "GET" => app.client.get(app.url(&path)),
            _ => app.client.delete(app.url(&path)),
        };
        let response = request.bearer_auth(&intruder).send().await.unwrap();
        problem(response, StatusCode::NOT_FOUND, "job_not_found").await;
    }
    // Lists read the store: wait until the owner sees the job before checking who else does.
    app.listed("/v1/jobs", 1).await;
    let theirs = ok_json(app.client.get(app.url("/v1/jobs")).bearer_auth(&intruder)).await;
    assert_eq!(theirs["items"], json!([]));
    // The intruder's DELETE cancelled nothing.
    let job = app.wait_for(id, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(job["cancel_requested"], false);
}
