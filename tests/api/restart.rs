//! `conveyor dev` killed with SIGKILL mid-work and started again on the same SQLite file loses
//! no accepted job.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, mint};

const SECRET: &str = "restart-secret";

fn start_dev(database_url: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["dev", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", database_url])
        .env("CONVEYOR_JWT_SECRET", SECRET)
        .env("CONVEYOR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("conveyor starts")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_until_healthy(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await
            && response.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("conveyor did not become ready at {base}");
}

#[tokio::test]
async fn a_killed_dev_process_restarted_on_its_database_finishes_every_accepted_job() {
    let data = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}?mode=rwc", data.path().join("c.db").display());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let token = mint(SECRET, "acme", crate::helpers::ALL_SCOPES);

    let mut first = start_dev(&database_url, port);
    wait_until_healthy(&client, &base).await;
    let mut sleeps = Vec::new();
    let submit = |body: Value| {
        let request = client
            .post(format!("{base}/v1/jobs"))
            .bearer_auth(&token)
            .json(&body)
            .send();
        async move {
            let response = request.await.unwrap();
            assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    for _ in 0..10 {
        sleeps.push(submit(json!({"type": "sleep", "payload": {"ms": 3000}})).await);
    }
    let later = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let scheduled = submit(json!({"type": "echo", "payload": {}, "run_at": later})).await;
    let retried = submit(json!({"type": "fail", "payload": {"times": 1}})).await;
    // Let the sleeps start, then kill the process without warning.
    tokio::time::sleep(Duration::from_millis(700)).await;
    first.kill().unwrap();
    first.wait().unwrap();

    let mut second = start_dev(&database_url, port);
    wait_until_healthy(&client, &base).await;
    let app = TestApp::attached(&base, SECRET, &token);
    for id in &sleeps {
        let job = app.wait_for(id, "succeeded", Duration::from_secs(20)).await;
        assert_eq!(
            job["attempts"], 2,
            "the attempt lost with the process counts: {job}"
        );
    }
    let job = app
        .wait_for(&scheduled, "succeeded", Duration::from_secs(20))
        .await;
    assert_eq!(job["attempts"], 1, "{job}");
    app.wait_for(&retried, "succeeded", Duration::from_secs(20))
        .await;
    app.listed("/v1/jobs?status=succeeded&limit=100", 12).await;
    second.kill().unwrap();
    second.wait().unwrap();
}

#[tokio::test]
async fn sigterm_lets_running_attempts_finish_before_exiting() {
    let data = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}?mode=rwc", data.path().join("c.db").display());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let token = mint(SECRET, "acme", crate::helpers::ALL_SCOPES);

    let mut first = start_dev(&database_url, port);
    wait_until_healthy(&client, &base).await;
    let app = TestApp::attached(&base, SECRET, &token);
    let job = app
        .submit(json!({"type": "sleep", "payload": {"ms": 1000}}))
        .await;
    let id = job["id"].as_str().unwrap();
    app.wait_for(id, "running", Duration::from_secs(5)).await;
    let terminated = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let exit = tokio::task::spawn_blocking(move || first.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "conveyor exited with {exit}");

    let mut second = start_dev(&database_url, port);
    wait_until_healthy(&client, &base).await;
    let done = app.job(id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["attempts"], 1,
        "the attempt finished within the grace period"
    );
    second.kill().unwrap();
    second.wait().unwrap();
}
