//! `conveyor dev` stopped (SIGKILL or SIGTERM) mid-work and started again on the same SQLite file
//! loses no accepted job and runs none twice.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use conveyor_events::Journal;
use serde_json::json;
use tempfile::TempDir;

use crate::helpers::{ALL_SCOPES, TestApp, mint};

const SECRET: &str = "restart-secret";

/// A database file and a port that successive `conveyor dev` processes share.
struct Site {
    _data: TempDir,
    database_url: String,
    port: u16,
    app: TestApp,
}

impl Site {
    fn new() -> Site {
        let data = tempfile::tempdir().unwrap();
        let database_url = format!("sqlite://{}?mode=rwc", data.path().join("c.db").display());
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let app = TestApp::attached(&base, SECRET, &mint(SECRET, "acme", ALL_SCOPES));
        Site {
            _data: data,
            database_url,
            port,
            app,
        }
    }

    /// Starts `conveyor dev` and waits until it is ready.
    async fn start(&self) -> Child {
        let mut child = Command::new(env!("CARGO_BIN_EXE_conveyor"))
            .args(["dev", "--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--database-url", &self.database_url])
            .env("CONVEYOR_JWT_SECRET", SECRET)
            .env("CONVEYOR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("conveyor starts");
        for _ in 0..200 {
            if let Ok(response) = self.app.client.get(self.app.url("/readyz")).send().await
                && response.status().is_success()
            {
                return child;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("conveyor did not become ready on port {}", self.port);
    }
}

fn id(job: &serde_json::Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_killed_dev_process_restarted_on_its_database_finishes_every_accepted_job() {
    let site = Site::new();
    let app = &site.app;
    let mut first = site.start().await;
    let mut sleeps = Vec::new();
    for _ in 0..10 {
        sleeps.push(id(&app
            .submit(json!({"type": "sleep", "payload": {"ms": 3000}}))
            .await));
    }
    let later = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let scheduled = id(&app
        .submit(json!({"type": "echo", "payload": {}, "run_at": later}))
        .await);
    let retried = id(&app
        .submit(json!({"type": "fail", "payload": {"times": 1}}))
        .await);
    // Let the sleeps start, then kill the process without warning.
    tokio::time::sleep(Duration::from_millis(700)).await;
    first.kill().unwrap();
    first.wait().unwrap();

    let mut second = site.start().await;
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
    let site = Site::new();
    let app = &site.app;
    let mut first = site.start().await;
    let job = id(&app
        .submit(json!({"type": "sleep", "payload": {"ms": 1000}}))
        .await);
    app.wait_for(&job, "running", Duration::from_secs(5)).await;
    let terminated = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let exit = tokio::task::spawn_blocking(move || first.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "conveyor exited with {exit}");
    let journal_url = conveyor::journal_url(&site.database_url).unwrap();
    let database = conveyor_store::Database::connect(&journal_url, None, None)
        .await
        .unwrap();
    let left = conveyor_store::SqlJournal::new(&database)
        .pending()
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "a clean shutdown leaves nothing to replay: {left:?}"
    );

    let mut second = site.start().await;
    let done = app.job(&job).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["attempts"], 1,
        "the attempt finished within the grace period"
    );
    second.kill().unwrap();
    second.wait().unwrap();
}
