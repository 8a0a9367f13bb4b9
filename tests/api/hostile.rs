//! Hostile input: JSON too deep or too large in its parts, oversized headers, and clients that
//! send slowly. Each gets a clear answer (or its connection closed), and nothing is accepted.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, echo, problem, spawn_app_with};

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!({}), |inner, _| json!({ "a": inner }))
}

/// Asserts the tenant has no job but one submitted now: lists come from the store, which the
/// recorder fills behind the broker, so the new job (once finished) shows that it caught up.
async fn nothing_else_accepted(app: &TestApp) {
    let sentinel = app.submit(echo(json!({"sentinel": true}))).await;
    let id = sentinel["id"].as_str().unwrap();
    app.wait_for(id, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(app.listed("/v1/jobs", 1).await, [id]);
}

#[tokio::test]
async fn json_past_the_depth_string_or_item_limits_is_refused_naming_the_field() {
    let app = spawn_app_with(&[
        "--max-json-depth",
        "4",
        "--max-json-string-bytes",
        "32",
        "--max-json-items",
        "5",
    ])
    .await;
    let cases = [
        (echo(nested(3)), "payload.a.a.a", "nest"),
        (echo(json!({"text": "x".repeat(33)})), "payload.text", "33"),
        (
            echo(json!({"items": [1, 2, 3, 4, 5, 6]})),
            "payload.items",
            "has 6",
        ),
        (
            echo(json!({"k".repeat(40): 1})),
            &format!("payload.{}", "k".repeat(40)),
            "key",
        ),
    ];
    for (body, field, said) in cases {
        let response = app.post_job(&body).send().await.unwrap();
        let problem = problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "json_too_complex",
        )
        .await;
        assert_eq!(problem["field"], field, "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(said),
            "{problem}"
        );
    }
    app.submit(echo(
        json!({"items": [1, 2, 3, 4, 5], "text": "x".repeat(32)}),
    ))
    .await;
}

#[tokio::test]
async fn json_nested_ten_thousand_deep_is_refused_without_harm_to_the_server() {
    let app = spawn_app_with(&[]).await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let response = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(&app.token)
        .header("Content-Type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    let within_parser = app.post_job(&echo(nested(100))).send().await.unwrap();
    problem(
        within_parser,
        StatusCode::UNPROCESSABLE_ENTITY,
        "json_too_complex",
    )
    .await;
    nothing_else_accepted(&app).await;
}

#[tokio::test]
async fn headers_past_the_limit_get_431() {
    let app = spawn_app_with(&["--max-header-bytes", "8192"]).await;
    let response = app
        .post_job(&echo(json!({})))
        .header("X-Padding", "p".repeat(10_000))
        .send()
        .await
        .unwrap();
    let body = problem(
        response,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("8192"), "{body}");
    // Past what the HTTP layer buffers at all, the answer is the same status, without a body.
    let response = app
        .get("/v1/jobs")
        .header("X-Padding", "p".repeat(200_000))
        .send()
        .await;
    if let Ok(response) = response {
        assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }
    nothing_else_accepted(&app).await;
}

/// Sends `start` and then nothing, and returns what the server answers: a whole response, or
/// whatever came before it closed the connection.
async fn send_and_stall(app: &TestApp, start: &str) -> String {
    let address = app.address.trim_start_matches("http://");
    let mut connection = TcpStream::connect(address).await.unwrap();
    connection.write_all(start.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = async {
        let mut chunk = [0; 4096];
        loop {
            let read = connection.read(&mut chunk).await.unwrap();
            answer.extend_from_slice(&chunk[..read]);
            if read == 0 || is_whole_response(&answer) {
                return;
            }
        }
    };
    // Far past the server's 500 ms: if it never gives up on the client, the test fails here.
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server answers or closes a stalled connection");
    String::from_utf8_lossy(&answer).into_owned()
}

fn is_whole_response(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    body.len() >= length
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let app = spawn_app_with(&["--client-timeout-ms", "500"]).await;
    let answer = send_and_stall(&app, "POST /v1/jobs HTTP/1.1\r\nHost: conveyor\r\n").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_body_gets_408_and_nothing_is_accepted() {
    let app = spawn_app_with(&["--client-timeout-ms", "500"]).await;
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: conveyor\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"type\": \"echo\"",
        app.token
    );
    let answer = send_and_stall(&app, &head).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
    nothing_else_accepted(&app).await;
}

#[tokio::test]
async fn invented_http_methods_add_no_series_to_the_metrics() {
    let app = spawn_app_with(&[]).await;
    for n in 0..50 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{n}").as_bytes()).unwrap();
        let response = app
            .client
            .request(method, app.url("/v1/jobs"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    let page = app.metrics().await;
    assert!(!page.contains("INVENTED"), "a method became a label value");
    assert!(page.contains(r#"method="other""#), "{page}");
}

/// PostgreSQL's `jsonb` holds no NUL: accepted, such a job could never be written to the store.
#[tokio::test]
async fn a_nul_character_anywhere_in_the_body_is_refused_naming_the_field() {
    let app = spawn_app_with(&[]).await;
    for (body, field) in [
        (echo(json!({"a": "x\u{0}y"})), "payload.a"),
        (echo(json!({"list": [1, "\u{0}"]})), "payload.list[1]"),
        (echo(json!({"k\u{0}": 1})), "payload.k\u{0}"),
    ] {
        let refused = app
            .refused(&body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field")
            .await;
        assert_eq!(refused["field"], field, "{refused}");
    }
    nothing_else_accepted(&app).await;
}

/// The store keeps tenants of up to 128 characters; a token that claims more, or a control
/// character, speaks for no tenant.
#[tokio::test]
async fn tenant_and_subject_claims_the_store_cannot_hold_are_refused() {
    let app = spawn_app_with(&[]).await;
    for tenant in ["t".repeat(129), "a\u{0}b".into(), "line\nbreak".into()] {
        let response = app
            .client
            .post(app.url("/v1/jobs"))
            .bearer_auth(app.token_for(&tenant))
            .json(&echo(json!({})))
            .send()
            .await
            .unwrap();
        let refused = problem(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
        assert!(
            refused["detail"].as_str().unwrap().contains("`tenant`"),
            "{refused}"
        );
    }
    let longest = "t".repeat(128);
    let response = app
        .client
        .post(app.url("/v1/jobs"))
        .bearer_auth(app.token_for(&longest))
        .json(&echo(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}
