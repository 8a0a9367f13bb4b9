//! Tokens beyond the shared secret: RS256, ES256 and EdDSA keys from a JWKS (a file or a URL)
//! that rotate without a restart, refusals that say why, and logs that carry no token or secret.
//! The keys are the test-only ones of tests/fixtures/jwt.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{ALL_SCOPES, Stack, TestApp, echo, mint, problem, spawn_app_with};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");
const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "conveyor-tests";

/// The test keys `kids` names, as a JWKS.
fn jwks(kids: &[&str]) -> String {
    let all: Value = serde_json::from_str(&fixture("test-only-jwks.json")).unwrap();
    let keys: Vec<&Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|key| kids.contains(&key["kid"].as_str().unwrap()))
        .collect();
    assert_eq!(keys.len(), kids.len(), "every kid is a test key");
    json!({ "keys": keys }).to_string()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap()
}

/// Claims that the servers of these tests accept; a test changes one to see the token refused.
fn claims() -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "sub": "tester", "tenant": "acme", "scope": ALL_SCOPES,
        "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600,
    })
}

/// [`claims`] with `changes`, a null removing its claim.
fn with(changes: Value) -> Value {
    let mut claims = claims();
    let claims_object = claims.as_object_mut().unwrap();
    for (claim, value) in changes.as_object().unwrap() {
        match value {
            Value::Null => claims_object.remove(claim),
            value => claims_object.insert(claim.clone(), value.clone()),
        };
    }
    claims
}

/// A token signed by the test key `key`, in the algorithm of its type, whose header names `kid`.
fn sign_as(kid: &str, key: &str, claims: &Value) -> String {
    let pem = fixture(&format!("{key}.pem"));
    let (algorithm, key) = match key {
        key if key.contains("-rsa-") => {
            (Algorithm::RS256, EncodingKey::from_rsa_pem(pem.as_bytes()))
        }
        key if key.contains("-ec-") => (Algorithm::ES256, EncodingKey::from_ec_pem(pem.as_bytes())),
        _ => (Algorithm::EdDSA, EncodingKey::from_ed_pem(pem.as_bytes())),
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.unwrap()).unwrap()
}

/// A token signed by the test key `kid`, naming it.
fn sign(kid: &str, claims: &Value) -> String {
    sign_as(kid, kid, claims)
}

/// An HS256 token keyed with `secret`, naming `kid` when given.
fn hs256(kid: Option<&str>, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(secret)).unwrap()
}

/// What `app` answers `GET /v1/jobs` with `token`.
async fn answer(app: &TestApp, token: &str) -> reqwest::Response {
    let request = app.client.get(app.url("/v1/jobs")).bearer_auth(token);
    request.send().await.unwrap()
}

/// Waits until `app` answers `token` with `status`.
async fn answers(app: &TestApp, token: &str, status: StatusCode, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let seen = answer(app, token).await.status();
        if seen == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {seen} after {within:?}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A token refused with `401 invalid_token`; returns the detail.
async fn refused(app: &TestApp, token: &str) -> String {
    let body = problem(
        answer(app, token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    body["detail"].as_str().unwrap().to_owned()
}

/// A JWKS file, and a server in dev mode that reads it and checks issuer and audience.
async fn app_with_jwks_file(kids: &[&str], extra: &[&str]) -> (TestApp, TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(kids)).unwrap();
    let app = app_with_jwks(file.to_str().unwrap(), extra).await;
    (app, dir, file)
}

async fn app_with_jwks(location: &str, extra: &[&str]) -> TestApp {
    let mut args = vec![
        "--jwks-url",
        location,
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
    ];
    args.extend_from_slice(extra);
    spawn_app_with(&args).await
}

const ALL_KEYS: [&str; 3] = ["test-only-rsa-1", "test-only-ec-1", "test-only-ed-1"];

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_are_accepted_beside_hs256_ones() {
    let (app, _dir, _) = app_with_jwks_file(&ALL_KEYS, &[]).await;
    for kid in ALL_KEYS {
        let response = answer(&app, &sign(kid, &claims())).await;
        assert_eq!(response.status(), StatusCode::OK, "{kid}");
    }
    // The secret's tokens are Conveyor's own and carry no issuer or audience.
    assert_eq!(answer(&app, &app.token).await.status(), StatusCode::OK);
    let job = app.submit(echo(json!({}))).await;
    let token = sign("test-only-ed-1", &claims());
    let read = app
        .client
        .get(app.url(&format!("/v1/jobs/{}", job["id"].as_str().unwrap())));
    let response = read.bearer_auth(token).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "one tenant, whichever key"
    );
}

#[tokio::test]
async fn each_refused_token_is_a_401_that_says_why() {
    let (app, _dir, _) = app_with_jwks_file(&ALL_KEYS, &[]).await;
    let now = chrono::Utc::now().timestamp();
    let good = sign("test-only-rsa-1", &claims());
    let [_, payload, _] = good.split('.').collect::<Vec<_>>()[..] else {
        panic!("a JWT has three parts");
    };
    let other = sign("test-only-rsa-2", &claims());
    let cases = [
        (
            "alg none",
            // {"alg":"none","typ":"JWT"}, with good claims and no signature.
            format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}."),
            "it is unsigned (`alg: none`)",
        ),
        (
            "HS256 keyed with the RSA public key, naming it",
            hs256(
                Some("test-only-rsa-1"),
                fixture("test-only-rsa-1.pub.pem").as_bytes(),
            ),
            "it says `alg: HS256`, but its key verifies RS256 only",
        ),
        (
            "HS256 keyed with the RSA public key, naming no key",
            hs256(None, fixture("test-only-rsa-1.pub.pem").as_bytes()),
            "its signature does not match its key",
        ),
        (
            "ES256 naming an RSA key",
            sign_as("test-only-rsa-1", "test-only-ec-1", &claims()),
            "it says `alg: ES256`, but its key verifies RS256 only",
        ),
        (
            "unknown kid",
            other.clone(),
            "the key it names (`kid`) is not in the JWKS",
        ),
        (
            "wrong iss",
            sign(
                "test-only-ec-1",
                &with(json!({"iss": "https://elsewhere.test"})),
            ),
            "its issuer (`iss`) is not `https://issuer.test`",
        ),
        (
            "no iss",
            sign("test-only-ec-1", &with(json!({"iss": null}))),
            "it has no `iss` claim",
        ),
        (
            "wrong aud",
            sign("test-only-ed-1", &with(json!({"aud": "another-service"}))),
            "its audience (`aud`) is not `conveyor-tests`",
        ),
        (
            "expired beyond the leeway",
            sign("test-only-rsa-1", &with(json!({"exp": now - 120}))),
            "it has expired",
        ),
        (
            "not valid yet",
            sign("test-only-rsa-1", &with(json!({"nbf": now + 120}))),
            "it is not valid yet (`nbf`)",
        ),
        (
            "signature of another key",
            format!(
                "{}.{}",
                good.rsplit_once('.').unwrap().0,
                other.rsplit('.').next().unwrap()
            ),
            "its signature does not match its key",
        ),
        ("not a JWT", "not-a-jwt".to_owned(), "it is not a JWT"),
    ];
    for (case, token, reason) in cases {
        let detail = refused(&app, &token).await;
        assert_eq!(
            detail,
            format!("the bearer token is not valid: {reason}"),
            "{case}"
        );
    }
    // Within the leeway, a token just expired still passes.
    let late = sign("test-only-rsa-1", &with(json!({"exp": now - 5})));
    assert_eq!(answer(&app, &late).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_key_whose_alg_disagrees_with_its_type_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let mut keys: Value = serde_json::from_str(&jwks(&ALL_KEYS)).unwrap();
    for key in keys["keys"].as_array_mut().unwrap() {
        if key["kid"] == "test-only-ec-1" {
            key["alg"] = json!("RS256");
        }
    }
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, keys.to_string()).unwrap();
    let app = app_with_jwks(file.to_str().unwrap(), &[]).await;

    let detail = refused(&app, &sign("test-only-ec-1", &claims())).await;
    assert!(detail.ends_with("is not in the JWKS"), "{detail}");
    let response = answer(&app, &sign("test-only-rsa-1", &claims())).await;
    assert_eq!(response.status(), StatusCode::OK, "the other keys serve");
}

#[tokio::test]
async fn a_key_added_to_the_jwks_file_is_used_without_a_restart() {
    let (app, _dir, file) = app_with_jwks_file(&["test-only-rsa-1"], &[]).await;
    let token = sign("test-only-rsa-2", &claims());
    refused(&app, &token).await;

    std::fs::write(&file, jwks(&["test-only-rsa-1", "test-only-rsa-2"])).unwrap();
    // The periodic refresh is minutes away: the unknown kid itself sets off the read.
    answers(&app, &token, StatusCode::OK, Duration::from_secs(15)).await;
}

/// A JWKS over HTTP: answers every request with what it was last told to, counting requests.
struct KeyServer {
    url: String,
    answer: Arc<Mutex<(u16, String)>>,
    reads: Arc<AtomicUsize>,
}

impl KeyServer {
    async fn start(body: String) -> KeyServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new((200, body)));
        let reads = Arc::new(AtomicUsize::new(0));
        let (serving, counting) = (answer.clone(), reads.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                counting.fetch_add(1, Ordering::SeqCst);
                let (status, body) = serving.lock().unwrap().clone();
                let response = format!(
                    "HTTP/1.1 {status} Answer\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        KeyServer { url, answer, reads }
    }

    fn serve(&self, status: u16, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// Waits until the JWKS has been read `more` more times.
    async fn read_again(&self, more: usize) {
        let target = self.reads() + more;
        for _ in 0..100 {
            if self.reads() >= target {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the JWKS was not read {more} more times");
    }
}

#[tokio::test]
async fn keys_served_over_http_rotate_in_and_out_without_a_restart() {
    let server = KeyServer::start(jwks(&["test-only-rsa-1"])).await;
    let app = app_with_jwks(&server.url, &["--jwks-refresh-secs", "1"]).await;
    let old = sign("test-only-rsa-1", &claims());
    let new = sign("test-only-rsa-2", &claims());
    refused(&app, &new).await;

    server.serve(200, jwks(&["test-only-rsa-1", "test-only-rsa-2"]));
    answers(&app, &new, StatusCode::OK, Duration::from_secs(10)).await;
    assert_eq!(answer(&app, &old).await.status(), StatusCode::OK);

    server.serve(200, jwks(&["test-only-rsa-2"]));
    answers(
        &app,
        &old,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(answer(&app, &new).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_keys_read_last() {
    let server = KeyServer::start(jwks(&["test-only-rsa-1"])).await;
    let app = app_with_jwks(&server.url, &["--jwks-refresh-secs", "1"]).await;
    let token = sign("test-only-rsa-1", &claims());
    for (status, body) in [(503, "down".to_owned()), (200, "<html>".to_owned())] {
        server.serve(status, body);
        server.read_again(2).await;
        let response = answer(&app, &token).await;
        assert_eq!(response.status(), StatusCode::OK, "after {status} answers");
    }
}

#[tokio::test]
async fn a_flood_of_unknown_kids_reads_the_jwks_at_most_once_in_a_while() {
    let server = KeyServer::start(jwks(&["test-only-rsa-1"])).await;
    let app = app_with_jwks(&server.url, &[]).await;
    let before = server.reads();
    for n in 0..50 {
        let token = sign_as(&format!("made-up-{n}"), "test-only-rsa-1", &claims());
        refused(&app, &token).await;
    }
    let reads = server.reads() - before;
    assert!(reads <= 1, "{reads} reads for 50 unknown kids");
}

/// `conveyor dev` as a process of its own, its whole output (logs and banner) in a file.
struct Logged {
    child: tokio::process::Child,
    log: PathBuf,
    _dir: TempDir,
}

const SECRET: &str = "logged-secret-4f1c9e";

impl Logged {
    fn spawn(extra: &[&str], log_filter: &str) -> Logged {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("output.log");
        let output = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_conveyor"))
            .args(["dev", "--listen", "127.0.0.1:0", "--jwt-secret", SECRET])
            .args(["--http-workers", "1", "--log-format", "json"])
            .args(Stack::from_env().fresh_backend_args(dir.path()))
            .args(extra)
            .env("CONVEYOR_LOG", log_filter)
            .stdout(Stdio::from(output.try_clone().unwrap()))
            .stderr(Stdio::from(output))
            .kill_on_drop(true)
            .spawn()
            .expect("conveyor starts");
        Logged {
            child,
            log,
            _dir: dir,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// Waits until the output says `text`.
    async fn says(&self, text: &str) {
        for _ in 0..300 {
            if self.output().contains(text) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the output never said {text:?}:\n{}", self.output());
    }

    /// A client of the server, once its banner says where it listens.
    async fn client(&self) -> TestApp {
        self.says("Conveyor is running on ").await;
        let output = self.output();
        let (_, rest) = output.split_once("Conveyor is running on ").unwrap();
        let address = rest.split_whitespace().next().unwrap();
        TestApp::attached(address, SECRET, &mint(SECRET, "acme", ALL_SCOPES))
    }
}

#[tokio::test]
async fn start_up_waits_for_the_jwks_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("published-later.json");
    let server = Logged::spawn(&["--jwks-url", file.to_str().unwrap()], "info");
    server
        .says("The JWKS is not reachable yet; waiting for it.")
        .await;

    std::fs::write(&file, jwks(&["test-only-ec-1"])).unwrap();
    let app = server.client().await;
    let response = answer(&app, &sign("test-only-ec-1", &claims())).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn logs_carry_neither_the_secret_nor_any_token() {
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("jwks.json");
    std::fs::write(&file, jwks(&ALL_KEYS)).unwrap();
    let mut server = Logged::spawn(&["--jwks-url", file.to_str().unwrap()], "trace");
    let app = server.client().await;

    let tokens = [
        (mint(SECRET, "acme", ALL_SCOPES), StatusCode::OK),
        (
            mint("a-wrong-secret", "acme", ALL_SCOPES),
            StatusCode::UNAUTHORIZED,
        ),
        (sign("test-only-rsa-1", &claims()), StatusCode::OK),
        (sign("test-only-rsa-2", &claims()), StatusCode::UNAUTHORIZED),
        (
            sign("test-only-ec-1", &with(json!({"exp": 1_000_000_000}))),
            StatusCode::UNAUTHORIZED,
        ),
        (
            sign_as("test-only-ed-1", "test-only-rsa-1", &claims()),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (token, status) in &tokens {
        let submit = app.client.post(app.url("/v1/jobs")).bearer_auth(token);
        let response = submit.json(&echo(json!({}))).send().await.unwrap();
        assert_eq!(response.status().is_success(), *status == StatusCode::OK);
        assert_eq!(answer(&app, token).await.status(), *status);
    }
    server.child.kill().await.unwrap();

    let output = server.output();
    assert!(output.contains("\"level\":\"TRACE\""), "trace logs were on");
    assert!(!output.contains(SECRET), "the secret is logged");
    for (token, _) in &tokens {
        // The header part is the same in many tokens, the banner's too; the rest is this one's.
        let (_, claims_and_signature) = token.split_once('.').unwrap();
        for part in claims_and_signature.split('.') {
            assert!(!output.contains(part), "a token is logged: {part}");
        }
    }
}

#[tokio::test]
async fn the_bearer_scheme_says_which_routes_each_scope_opens() {
    let (app, _dir, _) = app_with_jwks_file(&ALL_KEYS, &[]).await;
    let document = crate::helpers::ok_json(app.client.get(app.url("/openapi.json"))).await;
    let description = document["components"]["securitySchemes"]["bearer"]["description"]
        .as_str()
        .unwrap();
    assert!(
        description.ends_with(
            "Scopes:\n\n\
             - `admin`: `DELETE /v1/job-types/{name}`, `PUT /v1/job-types/{name}`, \
             `POST /v1/job-types/{name}/secret/rotate`\n\
             - `events:read`: `GET /v1/jobs/{id}/events`\n\
             - `jobs:read`: `GET /v1/job-types`, `GET /v1/job-types/{name}`, `GET /v1/jobs`, \
             `GET /v1/jobs/{id}`\n\
             - `jobs:work`: `POST /v1/jobs/claim`, `POST /v1/jobs/{id}/complete`, \
             `POST /v1/jobs/{id}/fail`, `POST /v1/jobs/{id}/heartbeat`\n\
             - `jobs:write`: `POST /v1/jobs`, `DELETE /v1/jobs/{id}`\n\
             \n`admin` also opens every other route.\n"
        ),
        "{description}"
    );
}
