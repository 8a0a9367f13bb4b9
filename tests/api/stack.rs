//! Conveyor as separate `api` and `worker` processes on the real stacks (Kafka or RabbitMQ, with
//! PostgreSQL and Redis), and what happens when a part of it fails. Each test runs on both
//! stacks, whatever `CONVEYOR_TEST_STACK` says.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use conveyor::{Cli, Handler, JobContext, JobError, JobTypeInfo, Registry, Running};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::events::read_events;
use crate::helpers::{ALL_SCOPES, Stack, TestApp, mint, problem};
use crate::proxy::Proxy;
use crate::pull_workers::{RESIZE, lease, path, resize_type};

const SECRET: &str = "stack-secret";
const REDIS: &str = "127.0.0.1:6379";
const RABBITMQ: &str = "127.0.0.1:5672";
const POSTGRES: &str = "127.0.0.1:5432";

/// One namespace on a real stack (topics, queues, schema, Redis keys) that several processes
/// share, as the replicas of one deployment do.
struct Deployment {
    args: Vec<String>,
    _data: TempDir,
}

impl Deployment {
    fn new(stack: Stack) -> Deployment {
        let data = tempfile::tempdir().unwrap();
        let args = stack.fresh_backend_args(data.path());
        Deployment { args, _data: data }
    }

    /// Points `flag` (e.g. `--cache-url`) at `value`.
    fn set(&mut self, flag: &str, value: String) {
        let at = self.args.iter().position(|arg| arg == flag).unwrap();
        self.args[at + 1] = value;
    }

    fn value(&self, flag: &str) -> &str {
        let at = self.args.iter().position(|arg| arg == flag).unwrap();
        &self.args[at + 1]
    }

    /// Sends the cache, the database or the broker through `proxy`.
    fn through(&mut self, flag: &str, upstream: &str, proxy: &Proxy) {
        let url = proxy.url(self.value(flag), upstream);
        self.set(flag, url);
    }

    fn command_line<'a>(&'a self, command: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut line = vec![command];
        if command == "api" || command == "dev" {
            line.extend(["--listen", "127.0.0.1:0", "--jwt-secret", SECRET]);
        }
        if command == "worker" || command == "dev" {
            line.extend(["--retry-base-ms", "50", "--shutdown-grace-secs", "1"]);
        }
        line.extend(self.args.iter().map(String::as_str));
        line.extend_from_slice(extra);
        line
    }

    async fn migrate(&self) {
        let line = [
            "conveyor",
            "migrate",
            "--database-url",
            self.value("--database-url"),
            "--database-schema",
            self.value("--database-schema"),
        ];
        let cli = Cli::try_parse_from(line).unwrap();
        conveyor::start(cli.command)
            .await
            .expect("the migration runs");
    }

    /// Starts `command` (`api`, `worker` or `dev`) in this test's process.
    async fn start(&self, command: &str, extra: &[&str]) -> Running {
        self.start_with(command, extra, Registry::built_in()).await
    }

    /// Starts `command` with the handlers of `registry`, as a worker binary of one's own does.
    async fn start_with(&self, command: &str, extra: &[&str], registry: Registry) -> Running {
        let mut line = vec!["conveyor"];
        line.extend(self.command_line(command, extra));
        let cli = Cli::try_parse_from(line).expect("arguments parse");
        conveyor::start_with(cli.command, registry)
            .await
            .expect("Conveyor starts")
    }

    /// Starts `command` as a process of its own (stopped when dropped), its log (standard
    /// output) going to `log`.
    fn spawn(&self, command: &str, extra: &[&str], log: Stdio) -> Process {
        let child = Command::new(env!("CARGO_BIN_EXE_conveyor"))
            .args(self.command_line(command, extra))
            .env("CONVEYOR_LOG", "warn")
            .stdout(log)
            .spawn()
            .expect("conveyor starts");
        Process(child)
    }
}

/// A child process that a failing test does not leave behind.
struct Process(Child);

impl Process {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn client(running: &Running) -> TestApp {
    let base = format!("http://127.0.0.1:{}", running.port.unwrap());
    TestApp::attached(&base, SECRET, &mint(SECRET, "acme", ALL_SCOPES))
}

/// A client of `running` with a token of `scope`, for tenant `tenant`.
fn client_as(running: &Running, tenant: &str, scope: &str) -> TestApp {
    let base = format!("http://127.0.0.1:{}", running.port.unwrap());
    TestApp::attached(&base, SECRET, &mint(SECRET, tenant, scope))
}

fn id(job: &Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

/// Runs a test on the Kafka stack and on the RabbitMQ stack.
macro_rules! on_real_stacks {
    ($($test:ident),* $(,)?) => {
        $(mod $test {
            use crate::helpers::Stack;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn kafka() {
                super::$test(Stack::Kafka).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn amqp() {
                super::$test(Stack::Amqp).await;
            }
        })*
    };
}

on_real_stacks!(
    replica_b_serves_what_replica_a_accepted,
    a_killed_worker_hands_its_jobs_to_another,
    restarts_of_the_cache_and_the_database_lose_no_accepted_job,
    a_process_started_before_its_cache_waits_for_it,
    two_api_processes_hold_a_tenant_to_its_rate_limit_together,
    a_worker_that_joins_takes_over_no_running_attempt,
    a_broker_that_is_down_gets_no_job_accepted,
    a_job_type_registered_on_one_replica_is_served_by_every_other,
    workers_of_a_queue_run_only_its_jobs,
);

async fn replica_b_serves_what_replica_a_accepted(stack: Stack) {
    let deployment = Deployment::new(stack);
    deployment.migrate().await;
    let a = deployment.start("api", &[]).await;
    let b = deployment.start("api", &[]).await;
    let _workers = deployment.start("worker", &[]).await;
    let (a, b) = (client(&a), client(&b));

    let job = a
        .submit(json!({"type": "sleep", "payload": {"ms": 1500}}))
        .await;
    let id = id(&job);
    let seen = b.job(&id).await;
    assert!(
        ["queued", "running"].contains(&seen["status"].as_str().unwrap()),
        "{seen}"
    );

    // A long poll on B answers when a worker changes the job.
    let etag = b.etag(&id).await;
    let changed = b
        .get(&format!("/v1/jobs/{id}?wait=20"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);

    // And B's event stream follows it to the end.
    let events = read_events(&b, &id).await;
    assert_eq!(events.last().unwrap()["status"], "succeeded", "{events:?}");
}

async fn a_killed_worker_hands_its_jobs_to_another(stack: Stack) {
    let deployment = Deployment::new(stack);
    deployment.migrate().await;
    let api = deployment.start("api", &[]).await;
    let app = client(&api);
    // The survivor joins first, and has joined once it has run a job. On Kafka that makes it the
    // group's leader: tansu 0.6 never finishes the rebalance after its leader dies (its group
    // coordinator keeps the dead member as leader), so the doomed worker must be a follower.
    let _survivor = deployment.spawn("worker", &["--concurrency", "4"], Stdio::null());
    let first = app.submit(json!({"type": "echo", "payload": {}})).await;
    app.wait_for(&id(&first), "succeeded", Duration::from_secs(30))
        .await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let worker = ["--concurrency", "4", "--metrics-listen", &metrics];
    let mut doomed = deployment.spawn("worker", &worker, Stdio::null());

    // Only once the doomed worker has run a job is it surely in the group: a later rebalance would
    // move partitions between live workers, and with them attempts under way.
    wait_until(
        Duration::from_secs(60),
        "the doomed worker runs a job",
        async || {
            app.submit(json!({"type": "echo", "payload": {}})).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let finished = r#"conveyor_jobs_finished_total{outcome="succeeded",type="echo"}"#;
            series_in(&app, &metrics, finished).await > 0.0
        },
    )
    .await;
    // Jobs go to partitions (Kafka) or consumers (RabbitMQ) as the broker likes: submit until the
    // doomed worker runs some, then it dies without a word.
    let mut ids = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let running_there = loop {
        for _ in 0..4 {
            let job = app
                .submit(json!({"type": "sleep", "payload": {"ms": 4000}}))
                .await;
            ids.push(id(&job));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let running = series_in(&app, &metrics, "conveyor_jobs_running").await;
        if running > 0.0 {
            break running as usize;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the doomed worker never ran a job"
        );
    };
    doomed.kill();

    let mut taken_over = 0;
    for id in &ids {
        let job = app.wait_for(id, "succeeded", Duration::from_secs(90)).await;
        assert_eq!(job["result"], json!({"slept_ms": 4000}), "{job}");
        taken_over += usize::from(job["attempts"] == 2);
    }
    // Attempts may start on the doomed worker between the look at its gauge and the kill, never
    // more than its concurrency; every other job ran once.
    assert!(
        (running_there..=4).contains(&taken_over),
        "{taken_over} jobs ran twice; the dead worker was running {running_there} (at most 4)"
    );
}

async fn a_worker_that_joins_takes_over_no_running_attempt(stack: Stack) {
    let deployment = Deployment::new(stack);
    deployment.migrate().await;
    let api = deployment.start("api", &[]).await;
    let app = client(&api);
    let _first = deployment.start("worker", &["--concurrency", "8"]).await;
    let joined = app.submit(json!({"type": "echo", "payload": {}})).await;
    app.wait_for(&id(&joined), "succeeded", Duration::from_secs(30))
        .await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        let job = app
            .submit(json!({"type": "sleep", "payload": {"ms": 5000}}))
            .await;
        ids.push(id(&job));
    }
    for id in &ids {
        app.wait_for(id, "running", Duration::from_secs(30)).await;
    }

    // On Kafka the newcomer is given partitions whose messages are under way in the first
    // worker, and receives them again from the last committed offset.
    let _second = deployment.start("worker", &["--concurrency", "8"]).await;
    for id in &ids {
        let job = app.wait_for(id, "succeeded", Duration::from_secs(60)).await;
        assert_eq!(
            job["attempts"], 1,
            "taken over while its worker lived: {job}"
        );
    }
    // The group goes on serving with both.
    let after = app.submit(json!({"type": "echo", "payload": {}})).await;
    app.wait_for(&id(&after), "succeeded", Duration::from_secs(30))
        .await;
}

/// RabbitMQ hands a worker that lost its connection the messages it had not acknowledged again,
/// over the new one, while their first deliveries still run. Those second deliveries must stay
/// unacknowledged until the attempts end: acknowledged at once, the jobs had no message left when
/// the worker then died, and stayed `running` for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_that_reconnected_and_then_died_leaves_no_job_running() {
    let mut deployment = Deployment::new(Stack::Amqp);
    deployment.migrate().await;
    let api = deployment.start("api", &[]).await;
    let app = client(&api);
    let proxy = Proxy::start(RABBITMQ).await;
    deployment.through("--broker-url", RABBITMQ, &proxy);
    // Room for the echo that shows the worker is back, besides the 16 attempts.
    let mut doomed = deployment.spawn("worker", &["--concurrency", "32"], Stdio::null());
    let mut ids = Vec::new();
    for _ in 0..16 {
        let job = app
            .submit(json!({"type": "sleep", "payload": {"ms": 8000}}))
            .await;
        ids.push(id(&job));
    }
    for id in &ids {
        app.wait_for(id, "running", Duration::from_secs(30)).await;
    }

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore();
    // Once the worker has its connection back it is sent the 16 messages again.
    let after = app.submit(json!({"type": "echo", "payload": {}})).await;
    app.wait_for(&id(&after), "succeeded", Duration::from_secs(30))
        .await;
    doomed.kill();

    let _next = deployment.spawn("worker", &["--concurrency", "16"], Stdio::null());
    for id in &ids {
        let job = app.wait_for(id, "succeeded", Duration::from_secs(90)).await;
        assert_eq!(job["attempts"], 2, "{job}");
    }
}

/// The dev banner shows where each backend is, never the password in its URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dev_banner_shows_no_password() {
    let deployment = Deployment::new(Stack::Amqp);
    assert!(deployment.value("--broker-url").contains(":guest@"));
    let mut dev = deployment.spawn("dev", &[], Stdio::piped());
    let banner = BufReader::new(dev.0.stdout.take().unwrap());
    let reading = tokio::task::spawn_blocking(move || {
        let mut lines = banner.lines().map_while(Result::ok);
        let shown: Vec<String> = lines
            .by_ref()
            .take_while(|line| !line.contains("export TOKEN"))
            .collect();
        std::thread::spawn(move || lines.for_each(drop));
        shown.join("\n")
    });
    let shown = tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("the banner is printed")
        .unwrap();
    assert!(shown.contains("amqp://guest:***@127.0.0.1"), "{shown}");
    assert!(!shown.contains(":guest@"), "{shown}");
}

/// RabbitMQ takes the command, and its confirm is lost on the way back: the api cannot know
/// whether the job was accepted. It says so, keeps the Idempotency-Key for the job, and the
/// client's retry with the key gets that job, not a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publish_left_unconfirmed_keeps_its_idempotency_key_for_the_job() {
    let mut deployment = Deployment::new(Stack::Amqp);
    deployment.migrate().await;
    let _worker = deployment.start("worker", &[]).await;
    let proxy = Proxy::start(RABBITMQ).await;
    deployment.through("--broker-url", RABBITMQ, &proxy);
    let api = deployment.start("api", &[]).await;
    let app = client(&api);
    let warm = app
        .run_until(json!({"type": "echo", "payload": {}}), "succeeded")
        .await;

    proxy.mute();
    let body = json!({"type": "echo", "payload": {"n": 1}});
    let send = || {
        app.post_job(&body)
            .header("Idempotency-Key", "unconfirmed-1")
            .send()
    };
    let first = send().await.unwrap();
    assert!(first.headers().contains_key("retry-after"));
    let answer = problem(
        first,
        StatusCode::SERVICE_UNAVAILABLE,
        "publish_unconfirmed",
    )
    .await;
    proxy.cut();
    proxy.restore();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let job: Value = loop {
        let response = send().await.unwrap();
        if response.status().is_success() {
            break response.json().await.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retry never got the job"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let id = id(&job);
    assert!(
        answer["detail"].as_str().unwrap().contains(&id),
        "{answer} vs {job}"
    );
    app.wait_for(&id, "succeeded", Duration::from_secs(30))
        .await;
    let mut listed = app.listed("/v1/jobs", 2).await;
    listed.sort();
    let mut expected = vec![id, self::id(&warm)];
    expected.sort();
    assert_eq!(listed, expected, "one job for the key");
}

/// A series of the metrics at `address`; 0 until it first appears.
async fn series_in(app: &TestApp, address: &str, series: &str) -> f64 {
    let page = app
        .client
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn wait_until(within: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {within:?} for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A broker this test can stop and start: a private tansu (Kafka), or RabbitMQ behind a proxy.
enum Outage {
    Kafka {
        port: u16,
        dir: TempDir,
        broker: Option<Child>,
    },
    Proxied(Proxy),
}

impl Outage {
    async fn new(stack: Stack, deployment: &mut Deployment) -> Outage {
        match stack {
            Stack::Kafka => {
                let port = free_port();
                let mut outage = Outage::Kafka {
                    port,
                    dir: tempfile::tempdir().unwrap(),
                    broker: None,
                };
                outage.restore().await;
                deployment.set("--broker-url", format!("kafka://127.0.0.1:{port}"));
                outage
            }
            Stack::Amqp => {
                let proxy = Proxy::start(RABBITMQ).await;
                deployment.through("--broker-url", RABBITMQ, &proxy);
                Outage::Proxied(proxy)
            }
            Stack::Embedded => unreachable!("the embedded broker lives in the process"),
        }
    }

    fn cut(&mut self) {
        match self {
            Outage::Kafka { broker, .. } => {
                let mut broker = broker.take().unwrap();
                broker.kill().unwrap();
                broker.wait().unwrap();
            }
            Outage::Proxied(proxy) => proxy.cut(),
        }
    }

    async fn restore(&mut self) {
        match self {
            Outage::Kafka { port, dir, broker } => {
                let tansu = std::env::var("CONVEYOR_TEST_TANSU").unwrap_or_else(|_| {
                    format!(
                        "{}/.cache/conveyor/tansu/bin/tansu",
                        std::env::var("HOME").unwrap()
                    )
                });
                let listener = format!("tcp://127.0.0.1:{port}");
                // SQLite storage in the test's directory: topics and messages outlive a restart.
                let child = Command::new(tansu)
                    .args(["broker", "--listener-url", &listener])
                    .args(["--advertised-listener-url", &listener])
                    .args(["--storage-engine", "sqlite://tansu.db"])
                    .current_dir(dir.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("tansu starts (scripts/services builds it)");
                *broker = Some(child);
                let port = *port;
                wait_until(Duration::from_secs(20), "tansu listens", async || {
                    tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .is_ok()
                })
                .await;
            }
            Outage::Proxied(proxy) => proxy.restore(),
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if let Outage::Kafka {
            broker: Some(broker),
            ..
        } = self
        {
            let _ = broker.kill();
            let _ = broker.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn a_broker_that_is_down_gets_no_job_accepted(stack: Stack) {
    let mut deployment = Deployment::new(stack);
    let mut broker = Outage::new(stack, &mut deployment).await;
    let dev = deployment
        .start("dev", &["--publish-timeout-ms", "1500"])
        .await;
    let app = client(&dev);
    app.run_until(json!({"type": "echo", "payload": {"n": 1}}), "succeeded")
        .await;

    broker.cut();
    let refused = app
        .post_job(&json!({"type": "echo", "payload": {"n": 2}}))
        .send()
        .await
        .unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let answer: Value = refused.json().await.unwrap();
    // A Kafka producer cannot tell a message it never sent from one whose acknowledgement was
    // lost: both time out.
    assert!(
        ["broker_unavailable", "publish_unconfirmed"].contains(&answer["code"].as_str().unwrap()),
        "{answer}"
    );
    // Whoever asks learns that the broker is away, not where it lives or what it said.
    assert!(!answer.to_string().contains("127.0.0.1"), "{answer}");
    let readyz = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE);
    let checks: Value = readyz.json().await.unwrap();
    assert_ne!(checks["checks"]["broker"], "ok", "{checks}");
    assert!(!checks.to_string().contains("127.0.0.1"), "{checks}");
    assert_eq!(checks["checks"]["database"], "ok", "{checks}");

    broker.restore().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let accepted = loop {
        let response = app
            .post_job(&json!({"type": "echo", "payload": {"n": 3}}))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::ACCEPTED {
            break response.json::<Value>().await.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker never came back"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    app.wait_for(&id(&accepted), "succeeded", Duration::from_secs(60))
        .await;
}

async fn restarts_of_the_cache_and_the_database_lose_no_accepted_job(stack: Stack) {
    let mut deployment = Deployment::new(stack);
    deployment.migrate().await;
    let redis = Proxy::start(REDIS).await;
    let postgres = Proxy::start(POSTGRES).await;
    deployment.through("--cache-url", REDIS, &redis);
    deployment.through("--database-url", POSTGRES, &postgres);
    let api = deployment.start("api", &[]).await;
    let _workers = deployment.start("worker", &[]).await;
    let app = client(&api);

    let submitting = tokio::spawn({
        let app = TestApp::attached(&app.address, SECRET, &app.token);
        async move {
            let mut accepted = Vec::new();
            let started = tokio::time::Instant::now();
            let mut n = 0;
            while started.elapsed() < Duration::from_secs(9) {
                n += 1;
                let body = json!({"type": "echo", "payload": {"n": n}});
                if let Ok(response) = app.post_job(&body).send().await
                    && response.status() == StatusCode::ACCEPTED
                {
                    accepted.push(id(&response.json().await.unwrap()));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            accepted
        }
    });
    for proxy in [&redis, &postgres] {
        tokio::time::sleep(Duration::from_secs(1)).await;
        proxy.cut();
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.restore();
    }
    let accepted = submitting.await.unwrap();
    assert!(accepted.len() > 50, "only {} jobs accepted", accepted.len());
    for id in &accepted {
        let job = app.wait_for(id, "succeeded", Duration::from_secs(60)).await;
        assert!(job["result"]["n"].is_number(), "{job}");
    }
}

async fn a_process_started_before_its_cache_waits_for_it(stack: Stack) {
    let mut deployment = Deployment::new(stack);
    deployment.migrate().await;
    let redis_port = free_port();
    deployment.set("--cache-url", format!("redis://127.0.0.1:{redis_port}"));
    let listen = format!("127.0.0.1:{}", free_port());
    let mut api = deployment.spawn("api", &["--listen", &listen], Stdio::piped());

    let log = BufReader::new(api.0.stdout.take().unwrap());
    let waiting = tokio::task::spawn_blocking(move || {
        let mut lines = log.lines().map_while(Result::ok);
        let said =
            lines.any(|line| line.contains("The cache is not reachable yet; waiting for it."));
        // Keep reading, so that the api never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        said
    });
    let said = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the api says what it waits for")
        .unwrap();
    assert!(said);
    assert!(
        api.0.try_wait().unwrap().is_none(),
        "the api waits instead of exiting"
    );

    let _redis = Process(
        Command::new("redis-server")
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts"),
    );
    let app = TestApp::attached(
        &format!("http://{listen}"),
        SECRET,
        &mint(SECRET, "acme", ALL_SCOPES),
    );
    wait_until(
        Duration::from_secs(30),
        "the api is ready",
        async || match app.client.get(app.url("/readyz")).send().await {
            Ok(response) => response.status() == StatusCode::OK,
            Err(_) => false,
        },
    )
    .await;
}

/// Submits `echo` jobs for `tenant` through `replicas` in turn from `connections` loops until
/// `until`; returns the ids accepted and the number refused with `429`.
async fn flood(
    replicas: &[TestApp],
    connections: usize,
    until: tokio::time::Instant,
) -> (Vec<String>, usize) {
    let loops = (0..connections).map(|n| {
        let app = &replicas[n % replicas.len()];
        async move {
            let (mut accepted, mut refused) = (Vec::new(), 0);
            while tokio::time::Instant::now() < until {
                let response = app
                    .post_job(&json!({"type": "echo", "payload": {}}))
                    .send()
                    .await
                    .unwrap();
                match response.status() {
                    StatusCode::ACCEPTED => accepted.push(id(&response.json().await.unwrap())),
                    StatusCode::TOO_MANY_REQUESTS => refused += 1,
                    other => panic!("a flood got {other}"),
                }
            }
            (accepted, refused)
        }
    });
    let mut total = (Vec::new(), 0);
    for (accepted, refused) in futures_util::future::join_all(loops).await {
        total.0.extend(accepted);
        total.1 += refused;
    }
    total
}

async fn two_api_processes_hold_a_tenant_to_its_rate_limit_together(stack: Stack) {
    const RATE: f64 = 20.0;
    const BURST: f64 = 10.0;
    const FLOOD: Duration = Duration::from_secs(4);
    let deployment = Deployment::new(stack);
    deployment.migrate().await;
    let ports = [free_port(), free_port()];
    let _apis: Vec<Process> = ports
        .iter()
        .map(|port| {
            let listen = format!("127.0.0.1:{port}");
            let limits = [
                "--listen",
                &listen,
                "--rate-limit",
                "20",
                "--rate-burst",
                "10",
            ];
            deployment.spawn("api", &limits, Stdio::null())
        })
        .collect();
    let _workers = deployment.start("worker", &[]).await;
    let as_tenant = |tenant: &str| -> Vec<TestApp> {
        ports
            .iter()
            .map(|port| {
                let base = format!("http://127.0.0.1:{port}");
                TestApp::attached(&base, SECRET, &mint(SECRET, tenant, ALL_SCOPES))
            })
            .collect()
    };
    let (flooder, bystander) = (as_tenant("acme"), as_tenant("globex"));
    for replica in &flooder {
        wait_until(Duration::from_secs(30), "the api is ready", async || {
            let ready = replica.client.get(replica.url("/readyz")).send().await;
            ready.is_ok_and(|response| response.status().is_success())
        })
        .await;
    }

    let started = tokio::time::Instant::now();
    let until = started + FLOOD;
    // The bystander submits at a quarter of its own allowance, timing each submission.
    let steady = async {
        let mut latencies = Vec::new();
        let mut ids = Vec::new();
        let mut n = 0;
        while tokio::time::Instant::now() < until {
            let app = &bystander[n % 2];
            let sent = std::time::Instant::now();
            ids.push(id(&app
                .submit(json!({"type": "echo", "payload": {"n": n}}))
                .await));
            latencies.push(sent.elapsed());
            n += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (ids, latencies)
    };
    let ((accepted, refused), (steady_ids, mut latencies)) =
        tokio::join!(flood(&flooder, 16, until), steady);
    let elapsed = started.elapsed().as_secs_f64();

    let allowance = BURST + RATE * elapsed;
    latencies.sort();
    eprintln!(
        "{stack:?}: over {elapsed:.2} s, two replicas accepted {} of the flooding tenant's \
         submissions and refused {refused} (allowance {allowance:.1}); the other tenant's {} \
         submissions took {:?} at the median and {:?} at most",
        accepted.len(),
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies.last().unwrap(),
    );
    let accepted_count = accepted.len() as f64;
    assert!(
        accepted_count <= allowance * 1.1 + 2.0 && accepted_count >= allowance * 0.8,
        "{accepted_count} accepted against an allowance of {allowance:.1}"
    );
    assert!(
        refused > accepted.len(),
        "the flood was not limited: {refused} refused"
    );
    // Nothing accepted is lost, the flooder's or the bystander's.
    for (watcher, ids) in [(&flooder[0], &accepted), (&bystander[1], &steady_ids)] {
        for id in ids {
            watcher
                .wait_for(id, "succeeded", Duration::from_secs(60))
                .await;
        }
    }
}

/// A type registered through one api replica is served by the other within a second; an HTTP
/// worker claims through one replica and reports through the other; and a replica stopped while
/// its worker holds a lease loses nothing: the lease runs out and the job is claimed again.
async fn a_job_type_registered_on_one_replica_is_served_by_every_other(stack: Stack) {
    let deployment = Deployment::new(stack);
    deployment.migrate().await;
    let a = deployment.start("api", &[]).await;
    let b = deployment.start("api", &[]).await;
    let _workers = deployment.start("worker", &[]).await;
    let admin = client_as(&a, "ops", "admin");
    // On a queue of its own, new to every process: the recorder takes it up without a restart.
    let mut on_a_new_queue = resize_type();
    on_a_new_queue["queue"] = json!("images");
    let response = admin
        .put_type(RESIZE, &on_a_new_queue)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let client_b = client(&b);
    wait_until(
        Duration::from_secs(2),
        "replica B knows the type",
        async || {
            client_b
                .get("/v1/job-types/resize")
                .send()
                .await
                .unwrap()
                .status()
                == StatusCode::OK
                && client_b
                    .post_job(&json!({"type": RESIZE, "payload": {"url": "u"}}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    == StatusCode::ACCEPTED
        },
    )
    .await;
    let (worker_a, worker_b) = (
        client_as(&a, "workers", "jobs:work"),
        client_as(&b, "workers", "jobs:work"),
    );
    let claimed = worker_a.claim_one(30_000).await;
    assert_eq!(claimed["tenant"], "acme");
    let beat = worker_b
        .post(
            &path(&claimed, "heartbeat"),
            &json!({"lease": lease(&claimed)}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(beat.status(), StatusCode::OK);
    let done = worker_b
        .post(
            &path(&claimed, "complete"),
            &json!({"lease": lease(&claimed), "result": "ok"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(client(&a).job(&id(&claimed)).await["status"], "succeeded");

    let job = client_b
        .submit(json!({"type": RESIZE, "payload": {"url": "v"}}))
        .await;
    let first = worker_a.claim_one(1_000).await;
    assert_eq!(first["id"], job["id"]);
    a.shutdown();
    a.wait().await.unwrap();
    let second = worker_b.claim_one(30_000).await;
    assert_eq!(second["id"], job["id"]);
    assert_eq!(second["attempts"], 2);
    let late = worker_b
        .post(&path(&first, "complete"), &json!({"lease": lease(&first)}))
        .send()
        .await
        .unwrap();
    problem(late, StatusCode::CONFLICT, "lease_lost").await;
}

/// Answers which worker ran the job.
struct Says(&'static str);

#[async_trait::async_trait]
impl Handler for Says {
    async fn run(&self, _: Value, _: JobContext) -> Result<Value, JobError> {
        Ok(json!({"worker": self.0}))
    }
}

/// Two job types on two queues, each worker pool given one queue (`--queues`), both able to run
/// either type: every job runs on its own queue's pool, and each queue shows its depth.
async fn workers_of_a_queue_run_only_its_jobs(stack: Stack) {
    let deployment = Deployment::new(stack);
    deployment.migrate().await;
    let api = deployment.start("api", &[]).await;
    let on = |queue: &str| {
        let mut info = JobTypeInfo::compiled(&format!("on-{queue}"), "", json!({}));
        info.queue = queue.into();
        info
    };
    let registry = |worker| {
        Registry::default()
            .with_type(on("mail"), Says(worker))
            .with_type(on("video"), Says(worker))
    };
    let _mail = deployment
        .start_with("worker", &["--queues", "mail"], registry("mail-pool"))
        .await;
    let _video = deployment
        .start_with("worker", &["--queues", "video"], registry("video-pool"))
        .await;
    let app = client(&api);
    wait_until(
        Duration::from_secs(2),
        "the api knows the types",
        async || {
            let listed = app.get_json("/v1/job-types").await.to_string();
            listed.contains("on-mail") && listed.contains("on-video")
        },
    )
    .await;
    let mut submitted = Vec::new();
    for n in 0..20 {
        let queue = if n % 2 == 0 { "mail" } else { "video" };
        let job = app
            .submit(json!({"type": format!("on-{queue}"), "payload": {}}))
            .await;
        submitted.push((queue, id(&job)));
    }
    for (queue, job) in &submitted {
        let done = app
            .wait_for(job, "succeeded", Duration::from_secs(30))
            .await;
        assert_eq!(done["result"]["worker"], format!("{queue}-pool"), "{done}");
    }
    for queue in ["mail", "video"] {
        let series = format!("conveyor_queue_waiting{{queue=\"{queue}\"}}");
        wait_until(Duration::from_secs(15), &series, async || {
            app.metrics().await.contains(&series)
        })
        .await;
    }
}
