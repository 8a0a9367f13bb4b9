use std::time::Duration;

use clap::Parser;
use conveyor::{Cli, Registry, Running};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const ALL_SCOPES: &str = "jobs:write jobs:read events:read";

pub struct TestApp {
    pub address: String,
    pub secret: String,
    pub client: reqwest::Client,
    pub token: String,
    /// Prefix of the server's topic names.
    pub topic_prefix: String,
    /// Kept so the server lives as long as the test; dropping it stops every task.
    _running: Option<Running>,
    _data: TempDir,
}

/// A fresh Conveyor in `dev` mode (API and workers in one process) on a free port, on the stack
/// `CONVEYOR_TEST_STACK` names (see [`Stack`]), in a namespace of its own.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    spawn_app_running(extra, Registry::built_in()).await
}

/// A fresh Conveyor whose workers run the handlers of `registry`.
pub async fn spawn_app_running(extra: &[&str], registry: Registry) -> TestApp {
    let data = tempfile::tempdir().unwrap();
    let backends = Stack::from_env().fresh_backend_args(data.path());
    let mut args = vec![
        "conveyor",
        "dev",
        "--listen",
        "127.0.0.1:0",
        "--jwt-secret",
        "test-secret",
        "--http-workers",
        "2",
    ];
    args.extend(backends.iter().map(String::as_str));
    args.extend_from_slice(extra);
    let topic_prefix = match args.iter().position(|arg| *arg == "--topic-prefix") {
        Some(at) => args[at + 1].to_owned(),
        None => "conveyor.".to_owned(),
    };
    let cli = Cli::try_parse_from(args).expect("test arguments parse");
    let running = conveyor::start_with(cli.command, registry)
        .await
        .expect("Conveyor starts");
    let address = format!("http://127.0.0.1:{}", running.port.unwrap());
    let secret = running.jwt_secret.clone().unwrap();
    let token = mint(&secret, "acme", ALL_SCOPES);
    TestApp {
        address,
        token,
        secret,
        client: reqwest::Client::new(),
        topic_prefix,
        _running: Some(running),
        _data: data,
    }
}

/// The services under a test: `embedded` (in-process broker, SQLite, in-process cache; the
/// default), `kafka` or `amqp` (each with PostgreSQL and Redis), as `CONVEYOR_TEST_STACK` says.
/// Where the services are: `CONVEYOR_TEST_KAFKA`, `CONVEYOR_TEST_AMQP`,
/// `CONVEYOR_TEST_DATABASE_URL`, `CONVEYOR_TEST_REDIS`, defaulting to this machine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    Embedded,
    Kafka,
    Amqp,
}

impl Stack {
    pub fn from_env() -> Stack {
        match std::env::var("CONVEYOR_TEST_STACK").as_deref() {
            Err(_) | Ok("" | "embedded") => Stack::Embedded,
            Ok("kafka") => Stack::Kafka,
            Ok("amqp") => Stack::Amqp,
            Ok(other) => panic!("CONVEYOR_TEST_STACK `{other}`: use embedded, kafka or amqp"),
        }
    }

    /// Backend flags for a namespace no other test uses: its own SQLite file in `data`, or its
    /// own topics, queues, consumer groups, PostgreSQL schema and Redis keys.
    pub fn fresh_backend_args(self, data: &std::path::Path) -> Vec<String> {
        let broker_url = match self {
            Stack::Embedded => {
                let file = data.join("conveyor.db");
                return vec![
                    "--database-url".into(),
                    format!("sqlite://{}?mode=rwc", file.display()),
                ];
            }
            Stack::Kafka => format!(
                "kafka://{}",
                service("CONVEYOR_TEST_KAFKA", "127.0.0.1:9092")
            ),
            Stack::Amqp => service(
                "CONVEYOR_TEST_AMQP",
                "amqp://guest:guest@127.0.0.1:5672/%2f",
            ),
        };
        let namespace = uuid::Uuid::now_v7().simple().to_string();
        vec![
            "--broker-url".into(),
            broker_url,
            "--database-url".into(),
            service(
                "CONVEYOR_TEST_DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/test",
            ),
            "--database-schema".into(),
            format!("t_{namespace}"),
            "--cache-url".into(),
            service("CONVEYOR_TEST_REDIS", "redis://127.0.0.1:6379"),
            "--topic-prefix".into(),
            format!("t{namespace}."),
            "--kafka-partitions".into(),
            "2".into(),
        ]
    }
}

fn service(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

pub fn mint(secret: &str, tenant: &str, scope: &str) -> String {
    conveyor::token::mint(
        secret.as_bytes(),
        tenant,
        "tester",
        scope,
        chrono::Duration::hours(1),
    )
}

impl TestApp {
    pub fn token_for(&self, tenant: &str) -> String {
        mint(&self.secret, tenant, ALL_SCOPES)
    }

    /// This server, acting for another tenant.
    pub fn as_tenant(&self, tenant: &str) -> TestApp {
        TestApp::attached(&self.address, &self.secret, &self.token_for(tenant))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(&self.token)
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.client.delete(self.url(path)).bearer_auth(&self.token)
    }

    pub fn post_job(&self, body: &Value) -> RequestBuilder {
        self.client
            .post(self.url("/v1/jobs"))
            .bearer_auth(&self.token)
            .json(body)
    }

    /// Submits and returns the accepted job, insisting on `202`.
    pub async fn submit(&self, body: Value) -> Value {
        let response = self.post_job(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "submitting {body}");
        response.json().await.unwrap()
    }

    pub async fn job(&self, id: &str) -> Value {
        let response = self.get(&format!("/v1/jobs/{id}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Polls until the job reaches `status` (or any terminal status, which then must be it).
    pub async fn wait_for(&self, id: &str, status: &str, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let job = self.job(id).await;
            let current = job["status"].as_str().unwrap().to_owned();
            if current == status {
                return job;
            }
            let terminal = ["succeeded", "failed", "cancelled"].contains(&current.as_str());
            assert!(!terminal, "job ended {current}, expected {status}: {job}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "job still {current} after {within:?}, expected {status}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn echo(payload: Value) -> Value {
    json!({ "type": "echo", "payload": payload })
}

/// A problem+json answer, checked for its status, content type and stable code.
pub async fn problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

impl TestApp {
    /// The ids a list answers with once it has `count` items: lists read the store, which may
    /// trail the cache by a group commit.
    pub async fn listed(&self, path: &str, count: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..100 {
            let page: Value = self.get(path).send().await.unwrap().json().await.unwrap();
            ids = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|job| job["id"].as_str().unwrap().to_owned())
                .collect();
            if ids.len() == count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(ids.len(), count, "{path} lists {ids:?}");
        ids
    }
}

impl TestApp {
    /// A client for a Conveyor this test did not start (a child process).
    pub fn attached(base: &str, secret: &str, token: &str) -> TestApp {
        TestApp {
            address: base.to_owned(),
            secret: secret.to_owned(),
            client: reqwest::Client::new(),
            token: token.to_owned(),
            topic_prefix: "conveyor.".to_owned(),
            _running: None,
            _data: tempfile::tempdir().unwrap(),
        }
    }
}

impl TestApp {
    /// A GET with this app's token, answered `200` with JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        ok_json(self.get(path)).await
    }

    /// The job's current ETag.
    pub async fn etag(&self, id: &str) -> String {
        let response = self.get(&format!("/v1/jobs/{id}")).send().await.unwrap();
        response.headers()["etag"].to_str().unwrap().to_owned()
    }

    /// Submits `body` and waits until the job reaches `status`.
    pub async fn run_until(&self, body: Value, status: &str) -> Value {
        let job = self.submit(body).await;
        self.wait_for(job["id"].as_str().unwrap(), status, Duration::from_secs(5))
            .await
    }
}

/// The value of one exact series in a Prometheus text page.
pub fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("/metrics has no series {series}"))
}

impl TestApp {
    /// Submits `body`, expecting it refused with `status` and `code`; returns the problem.
    pub async fn refused(&self, body: &Value, status: StatusCode, code: &str) -> Value {
        problem(self.post_job(body).send().await.unwrap(), status, code).await
    }

    /// The Prometheus page.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// Waits until a series of `/metrics` reaches `value` (outcomes are counted just after they
    /// are recorded); returns the last value seen.
    pub async fn metric_reaches(&self, series: &str, value: f64) -> f64 {
        let mut seen = f64::NAN;
        // Brokers outside the process are measured every few seconds.
        for _ in 0..500 {
            let page = self.metrics().await;
            if page.contains(series) {
                seen = metric(&page, series);
                if seen == value {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    }
}

/// Sends `request`, insisting on `200`, and returns its JSON body.
pub async fn ok_json(request: RequestBuilder) -> Value {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", response.url());
    response.json().await.unwrap()
}
