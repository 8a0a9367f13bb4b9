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

/// One tenant's backlog of long jobs holds at most its share of a worker's slots: another
/// tenant's job starts on the ones left, without waiting for any of them to end. (Its backlog is
/// no deeper than what the worker receives ahead of its slots: 3 running, 3 waiting of 4.)
#[tokio::test]
async fn a_tenants_long_jobs_leave_room_for_another_tenants_job() {
    let app =
        crate::helpers::spawn_app_with(&["--concurrency", "4", "--tenant-slot-share", "75"]).await;
    let mut busy = Vec::new();
    for _ in 0..6 {
        let job = app
            .submit(json!({"type": "sleep", "payload": {"ms": 20_000}}))
            .await;
        busy.push(job["id"].as_str().unwrap().to_owned());
    }
    // Which three run first is the broker's choice (Kafka spreads them over partitions).
    let running = async || {
        let mut running = 0;
        for id in &busy {
            running += usize::from(app.job(id).await["status"] == "running");
        }
        running
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while running().await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the busy tenant's jobs never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let other = app.as_tenant("globex");
    let job = other.submit(json!({"type": "echo", "payload": {}})).await;
    let done = other
        .wait_for(
            job["id"].as_str().unwrap(),
            "succeeded",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(done["attempts"], 1);
    assert_eq!(
        running().await,
        3,
        "the busy tenant holds its share of the 4 slots, no more"
    );
    for id in &busy {
        app.delete(&format!("/v1/jobs/{id}")).send().await.unwrap();
    }
}

/// Beyond what a worker receives ahead of its slots, one tenant's backlog waits on the backlog
/// lane: another tenant's new job is not queued behind it in broker order. (1 slot of 2 for the
/// busy tenant, 2 received ahead per lane: 30 one-second jobs on one lane would hold the other
/// tenant's job for half a minute.)
#[tokio::test]
async fn a_tenants_deep_backlog_does_not_delay_another_tenants_new_job() {
    let app = crate::helpers::spawn_app_with(&[
        "--concurrency",
        "2",
        "--tenant-slot-share",
        "50",
        "--tenant-backlog-after",
        "1",
    ])
    .await;
    let mut busy = Vec::new();
    for _ in 0..30 {
        let job = app
            .submit(json!({"type": "sleep", "payload": {"ms": 1_000}}))
            .await;
        busy.push(job["id"].as_str().unwrap().to_owned());
    }
    let other = app.as_tenant("globex");
    let job = other.submit(json!({"type": "echo", "payload": {}})).await;
    other
        .wait_for(
            job["id"].as_str().unwrap(),
            "succeeded",
            Duration::from_secs(10),
        )
        .await;
    let mut finished = 0;
    for id in &busy {
        let status = app.job(id).await["status"].clone();
        finished += usize::from(status == "succeeded");
    }
    assert!(
        finished < 15,
        "the other tenant's job waited for {finished} of the busy tenant's jobs"
    );
    for id in &busy {
        app.delete(&format!("/v1/jobs/{id}")).send().await.unwrap();
    }
}
