//! Job types registered over HTTP, and their jobs run by HTTP workers: claim under a lease,
//! heartbeat, complete or fail; a lost lease hands the job to another worker, and the first
//! one's late outcome is refused.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, mint, ok_json, problem, spawn_app, spawn_app_with};

pub(crate) const RESIZE: &str = "resize";

pub(crate) fn resize_type() -> Value {
    json!({
        "description": "Resize an image",
        "mode": "pull",
        "max_attempts": 2,
        "payload_schema": {
            "type": "object",
            "required": ["url"],
            "properties": {"url": {"type": "string"}}
        }
    })
}

/// The app as an operator (`admin`) and as an HTTP worker (`jobs:work`, of no tenant of its own).
struct Roles {
    admin: TestApp,
    worker: TestApp,
}

fn roles(app: &TestApp) -> Roles {
    Roles {
        admin: TestApp::attached(
            &app.address,
            &app.secret,
            &mint(&app.secret, "ops", "admin"),
        ),
        worker: TestApp::attached(
            &app.address,
            &app.secret,
            &mint(&app.secret, "workers", "jobs:work"),
        ),
    }
}

impl TestApp {
    pub(crate) fn put_type(&self, name: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .put(self.url(&format!("/v1/job-types/{name}")))
            .bearer_auth(&self.token)
            .json(body)
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
    }

    /// Claims with `body`, insisting on `200`; the jobs claimed.
    pub(crate) async fn claim(&self, body: Value) -> Vec<Value> {
        let answer = ok_json(self.post("/v1/jobs/claim", &body)).await;
        answer["jobs"].as_array().unwrap().clone()
    }

    /// Claims one job of `resize`, waiting for it.
    pub(crate) async fn claim_one(&self, lease_ms: u64) -> Value {
        let jobs = self
            .claim(json!({"types": [RESIZE], "wait_ms": 10_000, "lease_ms": lease_ms}))
            .await;
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        jobs[0].clone()
    }
}

async fn registered(app: &TestApp) -> Roles {
    let roles = roles(app);
    let response = roles
        .admin
        .put_type(RESIZE, &resize_type())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    roles
}

pub(crate) fn lease(claimed: &Value) -> Value {
    claimed["lease"]["token"].clone()
}

pub(crate) fn path(claimed: &Value, action: &str) -> String {
    format!("/v1/jobs/{}/{action}", claimed["id"].as_str().unwrap())
}

#[tokio::test]
async fn an_operator_registers_a_type_and_an_http_worker_runs_its_jobs() {
    let app = spawn_app().await;
    let Roles { admin, worker } = registered(&app).await;

    let replaced = admin.put_type(RESIZE, &resize_type()).send().await.unwrap();
    assert_eq!(replaced.status(), StatusCode::OK);
    let shown = app.get_json("/v1/job-types/resize").await;
    assert_eq!(shown["mode"], "pull");
    assert_eq!(shown["queue"], "default");
    let listed = app.get_json("/v1/job-types").await;
    let modes: Vec<(&str, &str)> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["mode"].as_str().unwrap()))
        .collect();
    assert!(modes.contains(&("resize", "pull")), "{modes:?}");
    assert!(modes.contains(&("echo", "builtin")), "{modes:?}");

    let bad = app
        .refused(
            &json!({"type": RESIZE, "payload": {}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_payload",
        )
        .await;
    assert_eq!(bad["field"], "payload.url");

    let job = app
        .submit(json!({"type": RESIZE, "payload": {"url": "https://x/a.png"}}))
        .await;
    assert_eq!(job["max_attempts"], 2, "the type's default");
    let claimed = worker.claim_one(30_000).await;
    assert_eq!(claimed["id"], job["id"]);
    assert_eq!(claimed["tenant"], "acme");
    assert_eq!(claimed["status"], "running");
    assert_eq!(claimed["payload"]["url"], "https://x/a.png");

    let beat = ok_json(worker.post(
        &path(&claimed, "heartbeat"),
        &json!({"lease": lease(&claimed), "progress": 0.5}),
    ))
    .await;
    assert_eq!(beat["cancel_requested"], false);
    assert!(beat["expires_at"].is_string());
    assert_eq!(app.job(job["id"].as_str().unwrap()).await["progress"], 0.5);

    let done = ok_json(worker.post(
        &path(&claimed, "complete"),
        &json!({"lease": lease(&claimed), "result": {"width": 64}}),
    ))
    .await;
    assert_eq!(done["status"], "succeeded");
    let seen = app.job(job["id"].as_str().unwrap()).await;
    assert_eq!(seen["result"], json!({"width": 64}));
    let finished = r#"conveyor_jobs_finished_total{outcome="succeeded",type="resize"}"#;
    assert_eq!(app.metric_reaches(finished, 1.0).await, 1.0);

    let again = worker
        .post(
            &path(&claimed, "complete"),
            &json!({"lease": lease(&claimed), "result": 1}),
        )
        .send()
        .await
        .unwrap();
    problem(again, StatusCode::CONFLICT, "lease_lost").await;
}

#[tokio::test]
async fn a_lost_lease_hands_the_job_to_another_worker_and_fences_the_first() {
    let app = spawn_app().await;
    let Roles { worker, .. } = registered(&app).await;
    let job = app
        .submit(json!({"type": RESIZE, "payload": {"url": "u"}}))
        .await;

    let first = worker.claim_one(1_000).await;
    // Nothing else is ready meanwhile.
    assert!(worker.claim(json!({"types": [RESIZE]})).await.is_empty());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let second = worker.claim_one(30_000).await;
    assert_eq!(second["id"], job["id"]);
    assert_eq!(second["attempts"], 2, "the lost attempt counts");
    assert_ne!(lease(&first), lease(&second));

    for action in ["heartbeat", "complete"] {
        let late = worker
            .post(&path(&first, action), &json!({"lease": lease(&first)}))
            .send()
            .await
            .unwrap();
        problem(late, StatusCode::CONFLICT, "lease_lost").await;
    }
    let late_fail = worker
        .post(
            &path(&first, "fail"),
            &json!({"lease": lease(&first), "error": "late"}),
        )
        .send()
        .await
        .unwrap();
    problem(late_fail, StatusCode::CONFLICT, "lease_lost").await;

    let done = ok_json(worker.post(
        &path(&second, "complete"),
        &json!({"lease": lease(&second), "result": "ok"}),
    ))
    .await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["attempts"], 2);
}

#[tokio::test]
async fn a_failed_attempt_retries_until_its_attempts_are_used_and_is_then_dead() {
    let app = spawn_app().await;
    let Roles { worker, .. } = registered(&app).await;
    let job = app
        .submit(json!({"type": RESIZE, "payload": {"url": "u"}}))
        .await;

    let first = worker.claim_one(30_000).await;
    let retrying = ok_json(worker.post(
        &path(&first, "fail"),
        &json!({"lease": lease(&first), "error": "timeout upstream", "retry_after_ms": 200}),
    ))
    .await;
    assert_eq!(retrying["status"], "retrying");
    assert_eq!(retrying["error"], "timeout upstream");

    let second = worker.claim_one(30_000).await;
    assert_eq!(second["id"], job["id"]);
    assert_eq!(second["attempts"], 2);
    let failed = ok_json(worker.post(
        &path(&second, "fail"),
        &json!({"lease": lease(&second), "error": "still broken"}),
    ))
    .await;
    assert_eq!(failed["status"], "failed", "two attempts were all it had");
}

#[tokio::test]
async fn a_permanent_failure_and_a_cancel_end_the_job_at_once() {
    let app = spawn_app().await;
    let Roles { worker, .. } = registered(&app).await;
    app.submit(json!({"type": RESIZE, "payload": {"url": "u"}}))
        .await;
    let claimed = worker.claim_one(30_000).await;
    let failed = ok_json(worker.post(
        &path(&claimed, "fail"),
        &json!({"lease": lease(&claimed), "error": "bad image", "retryable": false}),
    ))
    .await;
    assert_eq!(failed["status"], "failed");

    let job = app
        .submit(json!({"type": RESIZE, "payload": {"url": "u"}}))
        .await;
    let claimed = worker.claim_one(30_000).await;
    let id = job["id"].as_str().unwrap();
    let asked = app.delete(&format!("/v1/jobs/{id}")).send().await.unwrap();
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let beat = ok_json(worker.post(
        &path(&claimed, "heartbeat"),
        &json!({"lease": lease(&claimed)}),
    ))
    .await;
    assert_eq!(beat["cancel_requested"], true);
    let stopped = ok_json(worker.post(
        &path(&claimed, "fail"),
        &json!({"lease": lease(&claimed), "error": "stopped as asked"}),
    ))
    .await;
    assert_eq!(stopped["status"], "cancelled");
}

#[tokio::test]
async fn a_claim_long_polls_and_takes_up_to_max_jobs() {
    let app = spawn_app().await;
    let Roles { worker, .. } = registered(&app).await;

    let started = tokio::time::Instant::now();
    let none = worker
        .claim(json!({"types": [RESIZE], "wait_ms": 300}))
        .await;
    assert!(none.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));

    let waiting = {
        let worker = TestApp::attached(&worker.address, &worker.secret, &worker.token);
        tokio::spawn(async move {
            worker
                .claim(json!({"types": [RESIZE], "wait_ms": 10_000}))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let job = app
        .submit(json!({"type": RESIZE, "payload": {"url": "u"}}))
        .await;
    let woken = waiting.await.unwrap();
    assert_eq!(woken.len(), 1);
    assert_eq!(woken[0]["id"], job["id"]);

    for _ in 0..5 {
        app.submit(json!({"type": RESIZE, "payload": {"url": "u"}}))
            .await;
    }
    let mut claimed = 0;
    while claimed < 5 {
        let jobs = worker
            .claim(json!({"types": [RESIZE], "max": 3, "wait_ms": 5_000}))
            .await;
        assert!(!jobs.is_empty() && jobs.len() <= 3, "{jobs:?}");
        claimed += jobs.len();
    }
    assert_eq!(claimed, 5);
}

#[tokio::test]
async fn bad_definitions_and_bad_claims_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let Roles { admin, worker } = roles(&app);
    let refused = async |name: &str, body: Value, field: &str| {
        let response = admin.put_type(name, &body).send().await.unwrap();
        let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(body["field"], field, "{body}");
    };
    refused("Bad Name", resize_type(), "name").await;
    refused("echo", resize_type(), "name").await;
    let mut not_a_schema = resize_type();
    not_a_schema["payload_schema"] = json!({"type": "nothing"});
    refused("a", not_a_schema, "payload_schema").await;
    let mut push = resize_type();
    push["mode"] = json!("push");
    refused("a", push.clone(), "endpoint").await;
    push["endpoint"] = json!("ftp://files.example.com/");
    refused("a", push, "endpoint").await;
    let mut unknown = resize_type();
    unknown["colour"] = json!("red");
    refused("a", unknown, "colour").await;

    // Registering takes `admin`; a client's token does not do.
    let response = app.put_type("a", &resize_type()).send().await.unwrap();
    problem(response, StatusCode::FORBIDDEN, "insufficient_scope").await;
    let response = app
        .post("/v1/jobs/claim", &json!({"types": ["echo"]}))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN, "insufficient_scope").await;

    let response = worker
        .post("/v1/jobs/claim", &json!({"types": ["echo"]}))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(body["field"], "types");
    assert!(
        body["detail"].as_str().unwrap().contains("`echo`"),
        "{body}"
    );
    let response = worker
        .post("/v1/jobs/claim", &json!({"types": ["echo"], "max": 0}))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let id = uuid::Uuid::now_v7();
    let response = worker
        .post(
            &format!("/v1/jobs/{id}/complete"),
            &json!({"lease": "forged"}),
        )
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(body["field"], "lease");
}

#[tokio::test]
async fn a_type_with_unfinished_jobs_is_removed_only_by_force_which_fails_them() {
    let app = spawn_app().await;
    let Roles { admin, .. } = registered(&app).await;
    let job = app
        .submit(json!({"type": RESIZE, "payload": {"url": "u"}}))
        .await;
    let id = job["id"].as_str().unwrap();
    // The store learns of the job from the broker: once it lists the job, it counts as
    // unfinished.
    app.listed("/v1/jobs?type=resize", 1).await;

    let refused = admin.delete("/v1/job-types/resize").send().await.unwrap();
    problem(refused, StatusCode::CONFLICT, "job_type_in_use").await;
    let removed = ok_json(admin.delete("/v1/job-types/resize?force=true")).await;
    assert_eq!(removed["failed_jobs"], 1);
    let failed = app.job(id).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("`resize` was removed"),
        "{failed}"
    );
    let gone = app.get("/v1/job-types/resize").send().await.unwrap();
    problem(gone, StatusCode::NOT_FOUND, "job_type_not_found").await;
    app.refused(
        &json!({"type": RESIZE, "payload": {"url": "u"}}),
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_job_type",
    )
    .await;
    let built_in = admin.delete("/v1/job-types/echo").send().await.unwrap();
    problem(built_in, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
}

#[tokio::test]
async fn types_from_the_job_types_file_are_registered_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job-types.toml");
    std::fs::write(
        &file,
        "[job_types.thumbnail]\nmode = \"pull\"\ntimeout_ms = 5000\n\
         payload_schema = { type = \"object\" }\n",
    )
    .unwrap();
    let app = spawn_app_with(&["--job-types-file", file.to_str().unwrap()]).await;
    let shown = app.get_json("/v1/job-types/thumbnail").await;
    assert_eq!(shown["timeout_ms"], 5000);
    let job = app.submit(json!({"type": "thumbnail"})).await;
    assert_eq!(job["timeout_ms"], 5000, "the type's default");
}

#[tokio::test]
async fn a_bad_job_types_file_stops_the_start_naming_the_setting() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job-types.toml");
    std::fs::write(
        &file,
        "[job_types.thumbnail]\nmode = \"pull\"\npayload_schema = { type = 3 }\n",
    )
    .unwrap();
    let mut args = vec![
        "conveyor".to_owned(),
        "dev".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(crate::helpers::Stack::from_env().fresh_backend_args(dir.path()));
    args.extend(["--job-types-file".into(), file.display().to_string()]);
    let cli = conveyor::Cli::try_parse_from(args).unwrap();
    let Err(error) = conveyor::start(cli.command).await else {
        panic!("a bad job types file must stop the start");
    };
    let message = format!("{error:#}");
    assert!(message.contains("CONVEYOR_JOB_TYPES_FILE"), "{message}");
    assert!(
        message.contains("job_types.thumbnail.payload_schema"),
        "{message}"
    );
}

#[tokio::test]
async fn a_types_concurrency_cap_holds_however_many_claim_and_frees_as_attempts_end() {
    let app = spawn_app().await;
    let Roles { admin, worker } = roles(&app);
    let mut capped = resize_type();
    capped["concurrency"] = json!(2);
    let response = admin.put_type(RESIZE, &capped).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    for _ in 0..6 {
        app.submit(json!({"type": RESIZE, "payload": {"url": "u"}}))
            .await;
    }
    let claim = |lease_ms: u64, wait_ms: u64| {
        worker.claim(json!({"types": [RESIZE], "max": 5, "wait_ms": wait_ms, "lease_ms": lease_ms}))
    };
    let mut running = Vec::new();
    while running.len() < 2 {
        running.extend(claim(30_000, 2_000).await);
    }
    assert_eq!(running.len(), 2, "{running:?}");
    assert!(
        claim(30_000, 300).await.is_empty(),
        "a third attempt ran at once"
    );

    // One ends: its place is free for one more.
    ok_json(worker.post(
        &path(&running[0], "complete"),
        &json!({"lease": lease(&running[0]), "result": 1}),
    ))
    .await;
    let third = claim(1_000, 0).await;
    assert_eq!(third.len(), 1, "{third:?}");

    // Its lease runs out: its place is taken back for another attempt, and no more.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let fourth = claim(30_000, 2_000).await;
    assert_eq!(fourth.len(), 1, "{fourth:?}");
    assert!(
        claim(30_000, 300).await.is_empty(),
        "a third attempt ran at once"
    );
    let late = worker
        .post(
            &path(&third[0], "heartbeat"),
            &json!({"lease": lease(&third[0])}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        late.status(),
        StatusCode::CONFLICT,
        "the lost attempt cannot take its place back over the cap"
    );
}

#[tokio::test]
async fn a_tenants_deep_backlog_does_not_hold_back_another_tenants_job() {
    let app = spawn_app().await;
    let Roles { worker, .. } = registered(&app).await;
    for _ in 0..20 {
        app.submit(json!({"type": RESIZE, "payload": {"url": "deep"}}))
            .await;
    }
    let other = app.as_tenant("globex");
    let late = other
        .submit(json!({"type": RESIZE, "payload": {"url": "late"}}))
        .await;
    // Claims read the store, which learns of jobs from the broker.
    app.listed("/v1/jobs?type=resize", 20).await;
    other.listed("/v1/jobs?type=resize", 1).await;

    let mut tenants = Vec::new();
    for _ in 0..2 {
        let claimed = worker.claim(json!({"types": [RESIZE]})).await;
        tenants.push(claimed[0]["tenant"].as_str().unwrap().to_owned());
        if claimed[0]["id"] == late["id"] {
            break;
        }
    }
    assert!(
        tenants.contains(&"globex".to_owned()),
        "globex's job waited behind acme's backlog: {tenants:?}"
    );
}

#[tokio::test]
async fn registrations_of_one_new_name_at_once_make_one_type() {
    let app = spawn_app().await;
    let Roles { admin, .. } = roles(&app);
    let puts = (0..6).map(|_| admin.put_type("racy", &resize_type()).send());
    let mut statuses: Vec<u16> = futures_util::future::join_all(puts)
        .await
        .into_iter()
        .map(|response| response.unwrap().status().as_u16())
        .collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 201]);
}
