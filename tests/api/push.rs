//! Push types: Conveyor's workers POST each attempt to the type's endpoint, signed per Standard
//! Webhooks, and the answer decides the outcome. The receiver here is a plain HTTP/1.1 server that
//! checks every signature itself (HMAC-SHA256 from the `hmac` crate, over the spec's
//! `{id}.{timestamp}.{body}`), so a signature Conveyor got wrong fails the test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::helpers::{TestApp, mint, ok_json, spawn_app, spawn_app_with};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    body: Value,
    signed: bool,
}

/// A local endpoint answering from a script (status, extra headers, body), the last answer
/// repeated; it records each request and whether its signature checks out with `key`.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    key: Arc<Mutex<String>>,
}

impl Receiver {
    async fn start(script: Vec<(u16, &'static str, &'static str)>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let key = Arc::new(Mutex::new(String::new()));
        let (log, secret) = (Arc::clone(&seen), Arc::clone(&key));
        tokio::spawn(async move {
            let mut answered = 0;
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let mut stream = BufReader::new(stream);
                while let Some(request) = read_request(&mut stream).await {
                    let signed = verifies(&secret.lock().unwrap(), &request);
                    log.lock().unwrap().push(Seen {
                        id: request.header("webhook-id"),
                        body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
                        signed,
                    });
                    let (status, headers, body) = script[answered.min(script.len() - 1)];
                    answered += 1;
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\ncontent-type: application/json\r\n{headers}\r\n{body}",
                        body.len()
                    );
                    if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
                        break;
                    }
                }
            }
        });
        Receiver { url, seen, key }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

struct Request {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> String {
        let found = self.headers.iter().find(|(key, _)| key == name);
        found.map(|(_, value)| value.clone()).unwrap_or_default()
    }
}

async fn read_request(stream: &mut BufReader<tokio::net::TcpStream>) -> Option<Request> {
    let mut line = String::new();
    stream
        .read_line(&mut line)
        .await
        .ok()
        .filter(|read| *read > 0)?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        stream.read_line(&mut line).await.ok()?;
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut request = Request {
        headers,
        body: Vec::new(),
    };
    let length = request.header("content-length").parse().unwrap_or(0);
    request.body = vec![0; length];
    stream.read_exact(&mut request.body).await.ok()?;
    Some(request)
}

/// Standard Webhooks verification, written from the spec: any `v1,` signature in the header
/// that is the HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}` under the key.
fn verifies(secret: &str, request: &Request) -> bool {
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|key| STANDARD.decode(key).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    let signed = format!(
        "{}.{}.",
        request.header("webhook-id"),
        request.header("webhook-timestamp")
    );
    mac.update(signed.as_bytes());
    mac.update(&request.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    request
        .header("webhook-signature")
        .split(' ')
        .any(|signature| signature == expected)
}

fn admin(app: &TestApp) -> TestApp {
    TestApp::attached(
        &app.address,
        &app.secret,
        &mint(&app.secret, "ops", "admin"),
    )
}

async fn register(app: &TestApp, name: &str, endpoint: &str) -> reqwest::Response {
    admin(app)
        .client
        .put(app.url(&format!("/v1/job-types/{name}")))
        .bearer_auth(&admin(app).token)
        .json(&json!({"mode": "push", "endpoint": endpoint, "payload_schema": {"type": "object"}}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_signed_retried_after_503s_and_its_answer_is_the_result() {
    let receiver = Receiver::start(vec![
        (503, "retry-after: 0\r\n", r#"{"busy":true}"#),
        (503, "retry-after: 0\r\n", r#"{"busy":true}"#),
        (200, "", r#"{"thumbnail":"t.png"}"#),
    ])
    .await;
    let app = spawn_app_with(&["--outbound-allow", "127.0.0.1/32"]).await;
    let response = register(&app, "hook", &receiver.url).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let registered: Value = response.json().await.unwrap();
    let secret = registered["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{registered}");
    *receiver.key.lock().unwrap() = secret.clone();
    let shown = app.get_json("/v1/job-types/hook").await;
    assert!(!shown.to_string().contains("whsec_"), "shown once: {shown}");

    let job = app
        .submit(json!({"type": "hook", "payload": {"n": 1}, "max_attempts": 5}))
        .await;
    let id = job["id"].as_str().unwrap();
    let done = app.wait_for(id, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(done["result"], json!({"thumbnail": "t.png"}));
    assert_eq!(done["attempts"], 3);
    let seen = receiver.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (n, request) in seen.iter().enumerate() {
        assert!(request.signed, "attempt {}: {request:?}", n + 1);
        assert_eq!(request.id, format!("{id}.{}", n + 1));
        assert_eq!(request.body["payload"], json!({"n": 1}));
        assert_eq!(request.body["tenant"], "acme");
        assert_eq!(request.body["type"], "hook");
    }

    // A rotated secret signs from the next delivery on; replacing the type keeps it.
    let rotated = ok_json(
        admin(&app)
            .client
            .post(app.url("/v1/job-types/hook/secret/rotate"))
            .bearer_auth(&admin(&app).token),
    )
    .await;
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let replaced = register(&app, "hook", &receiver.url).await;
    assert_eq!(replaced.status(), StatusCode::OK);
    let replaced: Value = replaced.json().await.unwrap();
    assert!(replaced.get("secret").is_none(), "{replaced}");
    *receiver.key.lock().unwrap() = new_secret;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = app
        .submit(json!({"type": "hook", "payload": {"n": 2}}))
        .await;
    app.wait_for(
        again["id"].as_str().unwrap(),
        "succeeded",
        Duration::from_secs(30),
    )
    .await;
    let last = receiver.seen().pop().unwrap();
    assert!(last.signed, "signed with the rotated secret: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_fails_the_job_at_once_and_an_address_not_allowed_is_never_called() {
    let refusing = Receiver::start(vec![(422, "", r#"{"error":"no such image"}"#)]).await;
    let app = spawn_app_with(&["--outbound-allow", "127.0.0.1/32"]).await;
    assert_eq!(
        register(&app, "hook", &refusing.url).await.status(),
        StatusCode::CREATED
    );
    let job = app
        .submit(json!({"type": "hook", "payload": {}, "max_attempts": 5}))
        .await;
    let failed = app
        .wait_for(
            job["id"].as_str().unwrap(),
            "failed",
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(failed["attempts"], 1, "a 4xx is not retried: {failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("422") && error.contains("no such image"),
        "{error}"
    );

    let guarded = spawn_app().await;
    let receiver = Receiver::start(vec![(200, "", "{}")]).await;
    assert_eq!(
        register(&guarded, "hook", &receiver.url).await.status(),
        StatusCode::CREATED
    );
    let job = guarded
        .submit(json!({"type": "hook", "payload": {}, "max_attempts": 5}))
        .await;
    let failed = guarded
        .wait_for(
            job["id"].as_str().unwrap(),
            "failed",
            Duration::from_secs(30),
        )
        .await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("loopback") && error.contains("CONVEYOR_OUTBOUND_ALLOW"),
        "{error}"
    );
    assert_eq!(failed["attempts"], 1);
    assert!(receiver.seen().is_empty());
}
