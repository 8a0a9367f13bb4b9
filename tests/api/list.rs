use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{problem, spawn_app};

#[tokio::test]
async fn pages_are_newest_first_and_cover_every_job_once() {
    let app = spawn_app().await;
    let mut submitted = Vec::new();
    for n in 0..25 {
        let job = app.submit(json!({"type": "echo", "payload": n})).await;
        submitted.push(job["id"].as_str().unwrap().to_owned());
    }
    for id in &submitted {
        app.wait_for(id, "succeeded", Duration::from_secs(5)).await;
    }
    // Lists come from the store, whose writes may trail the cache by a group commit.
    app.listed("/v1/jobs?limit=100", 25).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/jobs?limit=10&cursor={cursor}"),
            None => "/v1/jobs?limit=10".to_owned(),
        };
        let page: Value = app.get_json(&path).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 10);
        seen.extend(
            items
                .iter()
                .map(|job| job["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    submitted.reverse();
    assert_eq!(seen, submitted, "newest first, each once");
}

#[tokio::test]
async fn lists_filter_by_type_and_status() {
    let app = spawn_app().await;
    let echo = app.submit(json!({"type": "echo", "payload": {}})).await;
    let failing = app
        .submit(json!({"type": "fail", "payload": {"times": 1, "permanent": true}}))
        .await;
    app.wait_for(
        echo["id"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(5),
    )
    .await;
    app.wait_for(
        failing["id"].as_str().unwrap(),
        "failed",
        Duration::from_secs(5),
    )
    .await;
    let ids = |page: Value| -> HashSet<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|job| job["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // Lists read the store, which the cache may be a moment ahead of.
    let expectations = [
        ("/v1/jobs?type=fail", &failing),
        ("/v1/jobs?status=succeeded", &echo),
        ("/v1/jobs?status=failed&type=fail", &failing),
    ];
    for (path, expected) in expectations {
        let expected = HashSet::from([expected["id"].as_str().unwrap().to_owned()]);
        let mut found = HashSet::new();
        for _ in 0..100 {
            let page: Value = app.get_json(path).await;
            found = ids(page);
            if found == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(found, expected, "{path}");
    }
}

#[tokio::test]
async fn bad_list_parameters_are_400_naming_them() {
    let app = spawn_app().await;
    for (query, field) in [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("limit=1000", "limit"),
        ("cursor=abc", "cursor"),
        // PostgreSQL holds no NUL: asked for one, it failed the request as if it were down.
        ("type=%00", "type"),
        ("type=echo%0A", "type"),
    ] {
        let response = app.get(&format!("/v1/jobs?{query}")).send().await.unwrap();
        let body = problem(response, StatusCode::BAD_REQUEST, "invalid_query").await;
        assert_eq!(body["field"], field);
    }
}
