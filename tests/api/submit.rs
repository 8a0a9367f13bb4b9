use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{echo, mint, problem, spawn_app};

#[tokio::test]
async fn an_accepted_job_is_202_with_location_and_visible_at_once() {
    let app = spawn_app().await;
    let response = app
        .post_job(&echo(json!({"hello": "world"})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let job: Value = response.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/jobs/{id}"));
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    for field in [
        "id",
        "type",
        "status",
        "payload",
        "result",
        "error",
        "attempts",
        "max_attempts",
        "progress",
        "created_at",
        "updated_at",
        "run_at",
        "started_at",
        "finished_at",
    ] {
        assert!(job.get(field).is_some(), "job body lacks {field}: {job}");
    }
    assert_eq!(job["status"], "queued");
    assert_eq!(job["max_attempts"], 3);

    let seen = app.get(&location).send().await.unwrap();
    assert_eq!(seen.status(), StatusCode::OK);

    let done = app
        .wait_for(id, "succeeded", std::time::Duration::from_secs(5))
        .await;
    assert_eq!(done["result"], json!({"hello": "world"}));
    assert_eq!(done["attempts"], 1);
    assert!(done["finished_at"].is_string());
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{\"type\": \"echo\",")
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(&app.token)
        .header("content-type", "text/plain")
        .body("type=echo")
        .send()
        .await
        .unwrap();
    problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_nothing_is_accepted() {
    let app = spawn_app().await;
    let big = "x".repeat(1024 * 1024 + 1);
    let response = app
        .post_job(&echo(json!({ "blob": big })))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // Only the job submitted after it is ever listed.
    let small = app.submit(echo(json!({}))).await;
    assert_eq!(
        app.listed("/v1/jobs", 1).await,
        [small["id"].as_str().unwrap()]
    );
}

#[tokio::test]
async fn an_unknown_type_is_422_naming_the_type_field() {
    let app = spawn_app().await;
    let body = app
        .refused(
            &json!({"type": "nope", "payload": {}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_job_type",
        )
        .await;
    assert_eq!(body["field"], "type");
}

#[tokio::test]
async fn a_payload_failing_its_schema_is_422_naming_the_field() {
    let app = spawn_app().await;
    let body = app
        .refused(
            &json!({"type": "sleep", "payload": {"ms": "soon"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_payload",
        )
        .await;
    assert_eq!(body["field"], "payload.ms");

    let body = app
        .refused(
            &json!({"type": "sleep", "payload": {}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_payload",
        )
        .await;
    assert_eq!(body["field"], "payload.ms");
}

#[tokio::test]
async fn bad_fields_are_422_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"type": "echo", "max_attempts": 0}), "max_attempts"),
        (
            json!({"type": "echo", "max_attempts": "three"}),
            "max_attempts",
        ),
        (json!({"type": "echo", "timeout_ms": 0}), "timeout_ms"),
        (json!({"type": "echo", "run_at": "tomorrow"}), "run_at"),
        (json!({"type": "echo", "colour": "red"}), "colour"),
        (json!({"payload": {}}), "type"),
    ];
    for (body, field) in cases {
        let response = app.post_job(&body).send().await.unwrap();
        let problem = problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(problem["field"], field, "for {body}");
    }
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401_with_a_challenge() {
    let app = spawn_app().await;
    let url = app.url("/v1/jobs");
    let body = echo(json!({}));
    let expired = conveyor::token::mint(
        app.secret.as_bytes(),
        "acme",
        "t",
        "jobs:write",
        chrono::Duration::hours(-2),
    );
    let wrong_key = mint("another-secret", "acme", "jobs:write");
    // {"alg":"none"} with valid-looking claims and no signature.
    let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4IiwidGVuYW50IjoiYWNtZSIsInNjb3BlIjoiam9iczp3cml0ZSIsImV4cCI6NDEwMjQ0NDgwMH0.";
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing_token"),
        (Some("Bearer not-a-jwt".into()), "invalid_token"),
        (Some(format!("Bearer {expired}")), "invalid_token"),
        (Some(format!("Bearer {wrong_key}")), "invalid_token"),
        (Some(format!("Bearer {unsigned}")), "invalid_token"),
        (Some(format!("Basic {}", "dXNlcjpwYXNz")), "invalid_token"),
    ];
    for (authorization, code) in cases {
        let mut request = app.client.post(&url).json(&body);
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{authorization:?}"
        );
        problem(response, StatusCode::UNAUTHORIZED, code).await;
    }
}

#[tokio::test]
async fn a_token_without_the_scope_is_403() {
    let app = spawn_app().await;
    let read_only = mint(&app.secret, "acme", "jobs:read");
    let response = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(&read_only)
        .json(&echo(json!({})))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN, "insufficient_scope").await;

    let write_only = mint(&app.secret, "acme", "jobs:write");
    let job = app.submit(echo(json!({}))).await;
    let response = app
        .client
        .get(app.url(&format!("/v1/jobs/{}", job["id"].as_str().unwrap())))
        .bearer_auth(&write_only)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN, "insufficient_scope").await;
}

#[tokio::test]
async fn an_unknown_id_is_404() {
    let app = spawn_app().await;
    for id in [uuid::Uuid::now_v7().to_string(), "not-a-uuid".to_owned()] {
        let response = app.get(&format!("/v1/jobs/{id}")).send().await.unwrap();
        problem(response, StatusCode::NOT_FOUND, "job_not_found").await;
    }
}

#[tokio::test]
async fn a_token_without_the_scope_is_403_whatever_the_body() {
    let app = spawn_app().await;
    let read_only = mint(&app.secret, "acme", "jobs:read");
    let big = "x".repeat(2 * 1024 * 1024);
    for (content_type, body) in [
        ("application/json", big),
        ("application/json", "{not json".to_owned()),
        ("text/plain", "hello".to_owned()),
    ] {
        let response = app
            .client
            .post(app.url("/v1/jobs"))
            .bearer_auth(&read_only)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        problem(response, StatusCode::FORBIDDEN, "insufficient_scope").await;
    }
}

#[tokio::test]
async fn every_route_checks_its_scope() {
    let app = spawn_app().await;
    let job = app.submit(echo(json!({}))).await;
    let id = job["id"].as_str().unwrap();
    let no_scopes = mint(&app.secret, "acme", "");
    for (method, path) in [
        ("GET", "/v1/jobs".to_owned()),
        ("GET", format!("/v1/jobs/{id}")),
        ("GET", format!("/v1/jobs/{id}/events")),
        ("DELETE", format!("/v1/jobs/{id}")),
        ("GET", "/v1/job-types".to_owned()),
    ] {
        let request = match method {
            "GET" => app.client.get(app.url(&path)),
            _ => app.client.delete(app.url(&path)),
        };
        let response = request.bearer_auth(&no_scopes).send().await.unwrap();
        problem(response, StatusCode::FORBIDDEN, "insufficient_scope").await;
    }
}
