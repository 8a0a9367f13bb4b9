//! What a tenant may do: rate limits with `429` and the `RateLimit` headers, the quota of
//! unfinished jobs, event streams and long-polls per tenant, and allowed job types.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, echo, problem, spawn_app_with};

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn sleep_job(ms: u64) -> Value {
    json!({"type": "sleep", "payload": {"ms": ms}})
}

#[tokio::test]
async fn a_tenant_past_its_submission_rate_gets_429_with_retry_after_and_others_do_not() {
    let app = spawn_app_with(&["--rate-limit", "0.5", "--rate-burst", "3"]).await;
    let mut accepted = Vec::new();
    for remaining in [2, 1, 0] {
        let response = app.post_job(&echo(json!({}))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&response, "ratelimit-policy"), "\"submit\";q=3;w=6");
        let standing = header(&response, "ratelimit");
        assert!(
            standing.starts_with(&format!("\"submit\";r={remaining};t=")),
            "{standing}"
        );
        let job: Value = response.json().await.unwrap();
        accepted.push(job["id"].as_str().unwrap().to_owned());
    }

    let refused = app.post_job(&echo(json!({}))).send().await.unwrap();
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert!(header(&refused, "ratelimit").starts_with("\"submit\";r=0;t="));
    let body = problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert!(
        body["detail"].as_str().unwrap().contains("submit"),
        "{body}"
    );

    // Nothing was accepted for the refused request, and another tenant has its own allowance.
    let mut listed = app.listed("/v1/jobs", accepted.len()).await;
    listed.sort();
    assert_eq!(listed, accepted);
    app.as_tenant("globex").submit(echo(json!({}))).await;
}

#[tokio::test]
async fn reads_draw_on_an_allowance_of_their_own() {
    let app = spawn_app_with(&[
        "--read-rate-limit",
        "0.1",
        "--read-rate-burst",
        "2",
        "--rate-limit",
        "0",
    ])
    .await;
    for _ in 0..2 {
        let response = app.get("/v1/jobs").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(header(&response, "ratelimit-policy").starts_with("\"read\";q=2;"));
    }
    let refused = app.get("/v1/job-types").send().await.unwrap();
    problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Submissions are not reads, and are not limited here.
    let accepted = app.post_job(&echo(json!({}))).send().await.unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    assert!(accepted.headers().get("ratelimit").is_none());
}

#[tokio::test]
async fn a_tenant_at_its_quota_of_unfinished_jobs_gets_429_until_one_finishes() {
    let app = spawn_app_with(&["--max-inflight", "2"]).await;
    let first = app.submit(sleep_job(60_000)).await;
    let keyed = app
        .post_job(&sleep_job(60_000))
        .header("Idempotency-Key", "second")
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), StatusCode::ACCEPTED);

    let refused = app.post_job(&echo(json!({}))).send().await.unwrap();
    assert_eq!(header(&refused, "retry-after"), "1");
    let body = problem(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "in_flight_quota_exceeded",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains('2'), "{body}");
    // Repeating an accepted request is not a new job, so the quota does not stand in its way.
    let repeated = app
        .post_job(&sleep_job(60_000))
        .header("Idempotency-Key", "second")
        .send()
        .await
        .unwrap();
    assert_eq!(repeated.status(), StatusCode::OK);
    // Other tenants have quotas of their own.
    app.as_tenant("globex").submit(echo(json!({}))).await;

    let id = first["id"].as_str().unwrap();
    let cancelled = app.delete(&format!("/v1/jobs/{id}")).send().await.unwrap();
    assert!(cancelled.status().is_success());
    app.wait_for(id, "cancelled", Duration::from_secs(10)).await;
    app.submit(echo(json!({}))).await;
}

#[tokio::test]
async fn a_refused_submission_holds_no_place_in_the_quota() {
    let app = spawn_app_with(&["--max-inflight", "1"]).await;
    let invalid = app
        .post_job(&json!({"type": "sleep", "payload": {"ms": "long"}}))
        .send()
        .await
        .unwrap();
    problem(invalid, StatusCode::UNPROCESSABLE_ENTITY, "invalid_payload").await;
    let job = app.submit(echo(json!({"n": 1}))).await;
    app.wait_for(
        job["id"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(10),
    )
    .await;
    app.submit(echo(json!({"n": 2}))).await;
}

#[tokio::test]
async fn a_tenant_may_have_only_so_many_long_polls_waiting_and_a_client_that_goes_frees_its_place()
{
    let app = spawn_app_with(&["--max-long-polls-per-tenant", "2"]).await;
    let run_at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let job = app
        .submit(json!({"type": "echo", "payload": {}, "run_at": run_at}))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let etag = app.etag(&id).await;
    let long_poll = |app: &TestApp| {
        app.get(&format!("/v1/jobs/{id}?wait=30"))
            .header("if-none-match", &etag)
            .send()
    };
    let waiting: Vec<_> = (0..2).map(|_| tokio::spawn(long_poll(&app))).collect();
    assert_eq!(
        app.metric_reaches("conveyor_open_waits{kind=\"long_poll\"}", 2.0)
            .await,
        2.0
    );

    let refused = long_poll(&app).await.unwrap();
    assert_eq!(header(&refused, "retry-after"), "1");
    problem(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_long_polls",
    )
    .await;
    // A plain read waits for nothing, and another tenant has places of its own.
    assert_eq!(
        app.get(&format!("/v1/jobs/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let other = app.as_tenant("globex");
    let theirs = other.submit(echo(json!({}))).await;
    let path = format!("/v1/jobs/{}?wait=1", theirs["id"].as_str().unwrap());
    assert_ne!(
        other.get(&path).send().await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    // Clients that hang up: their requests end on the server too, and nothing waits any more.
    for request in waiting {
        request.abort();
    }
    assert_eq!(
        app.metric_reaches("conveyor_open_waits{kind=\"long_poll\"}", 0.0)
            .await,
        0.0
    );
    assert_eq!(app.metric_reaches("conveyor_watched_jobs", 0.0).await, 0.0);
    let again = app
        .get(&format!("/v1/jobs/{id}?wait=1"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn a_tenant_may_hold_only_so_many_event_streams_open() {
    let app = spawn_app_with(&["--max-streams-per-tenant", "2"]).await;
    let job = app.submit(sleep_job(60_000)).await;
    let events = format!("/v1/jobs/{}/events", job["id"].as_str().unwrap());
    let first = app.get(&events).send().await.unwrap();
    let second = app.get(&events).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);

    let refused = app.get(&events).send().await.unwrap();
    assert_eq!(header(&refused, "retry-after"), "1");
    problem(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_streams").await;
    let other = app.as_tenant("globex");
    let theirs = other.submit(echo(json!({}))).await;
    let path = format!("/v1/jobs/{}/events", theirs["id"].as_str().unwrap());
    assert_eq!(
        other.get(&path).send().await.unwrap().status(),
        StatusCode::OK
    );

    // A client that goes away gives its stream's place back.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let again = app.get(&events).send().await.unwrap();
        if again.status() == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_tenants_file_overrides_limits_and_allowed_job_types_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.toml");
    std::fs::write(
        &file,
        "[tenants.acme]\nrate_limit = 0.1\nrate_burst = 1\njob_types = [\"echo\"]\nweight = 2\n",
    )
    .unwrap();
    let app = spawn_app_with(&["--tenants-file", file.to_str().unwrap()]).await;

    let refused = app.post_job(&sleep_job(10)).send().await.unwrap();
    let body = problem(refused, StatusCode::FORBIDDEN, "job_type_not_allowed").await;
    assert_eq!(body["field"], "type");
    let types = app.get_json("/v1/job-types").await;
    let names: Vec<&str> = types["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo"]);

    // The refused submission used acme's one-request burst; the next is over its rate.
    let limited = app.post_job(&echo(json!({}))).send().await.unwrap();
    problem(limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    // A tenant the file does not name keeps the defaults: every type, no limit.
    let other = app.as_tenant("globex");
    for _ in 0..3 {
        other.submit(sleep_job(10)).await;
    }
}

#[test]
fn a_tenants_file_that_cannot_work_stops_the_server_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.toml");
    std::fs::write(&file, "[tenants.acme]\nmax_inflight = -3\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["dev", "--listen", "127.0.0.1:0", "--tenants-file"])
        .arg(&file)
        .arg("--database-url")
        .arg(format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("c.db").display()
        ))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("CONVEYOR_TENANTS_FILE") && said.contains("max_inflight"),
        "{said}"
    );
}
