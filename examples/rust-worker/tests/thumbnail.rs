//! The worker binary of one's own, end to end on the embedded default: its type is registered when
//! it starts, the api checks payloads against its schema, and its handler runs the jobs.

use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_own_type_is_accepted_checked_and_run() {
    let data = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}?mode=rwc", data.path().join("c.db").display());
    let line = [
        "rust-worker",
        "dev",
        "--listen",
        "127.0.0.1:0",
        "--jwt-secret",
        "secret",
        "--database-url",
        &database,
    ];
    let cli = conveyor::Cli::try_parse_from(line).unwrap();
    let running = conveyor::start_with(cli.command, conveyor_example_rust_worker::registry())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", running.port.unwrap());
    let token = conveyor::token::mint(
        b"secret",
        "acme",
        "tester",
        "jobs:write jobs:read",
        chrono::Duration::hours(1),
    );
    let client = reqwest::Client::new();
    let submit = async |body: Value| {
        client
            .post(format!("{base}/v1/jobs"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap()
    };

    let types: Value = client
        .get(format!("{base}/v1/job-types/thumbnail"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(types["mode"], "builtin");

    let refused = submit(json!({"type": "thumbnail", "payload": {"url": "a.png"}})).await;
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["field"], "payload.width");

    let accepted =
        submit(json!({"type": "thumbnail", "payload": {"url": "a.png", "width": 64}})).await;
    assert_eq!(accepted.status(), 202);
    let job: Value = accepted.json().await.unwrap();
    let url = format!("{base}/v1/jobs/{}", job["id"].as_str().unwrap());
    let mut seen = Value::Null;
    for _ in 0..250 {
        seen = client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if seen["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen["status"], "succeeded", "{seen}");
    assert_eq!(seen["result"]["thumbnail"], "a.png@64w");
    running.shutdown();
    running.wait().await.unwrap();
}
