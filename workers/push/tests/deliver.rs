//! `Push::deliver` against a real HTTP server on 127.0.0.1.
//!
//! The server is a few lines of hand-written HTTP/1.1 so that it can also
//! misbehave (hang, cut a body short) and so that what it checks does not
//! share code with the client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use conveyor_push::{OutboundPolicy, Push, PushOutcome};
use conveyor_schemas::SigningSecret;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Reply {
    /// Written as is, then the connection is closed.
    Raw(Vec<u8>),
    /// Read the request, then say nothing until the client gives up.
    Hang,
}

fn reply(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut text = format!(
        "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    Reply::Raw(bytes)
}

struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
}

impl Server {
    async fn start(respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let respond = Arc::new(respond);
        let (seen, count) = (requests.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let (seen, respond) = (seen.clone(), respond.clone());
                tokio::spawn(async move {
                    let mut socket = BufReader::new(socket);
                    let Some(request) = read_request(&mut socket).await else {
                        return;
                    };
                    seen.lock().unwrap().push(request.clone());
                    match respond(&request) {
                        Reply::Raw(bytes) => {
                            let _ = socket.get_mut().write_all(&bytes).await;
                            let _ = socket.get_mut().shutdown().await;
                        }
                        Reply::Hang => tokio::time::sleep(Duration::from_secs(60)).await,
                    }
                });
            }
        });
        Server {
            addr,
            requests,
            connections,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_request(socket: &mut BufReader<tokio::net::TcpStream>) -> Option<Recorded> {
    let mut line = String::new();
    socket.read_line(&mut line).await.ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        line.clear();
        socket.read_line(&mut line).await.ok()?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    socket.read_exact(&mut body).await.ok()?;
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

fn loopback() -> OutboundPolicy {
    OutboundPolicy::parse("127.0.0.1/32").unwrap()
}

async fn deliver(push: &Push, url: &str, body: &[u8], timeout: Duration) -> PushOutcome {
    let secret = SigningSecret::parse(KEY).unwrap();
    push.deliver(url, "msg_2kD7", &secret, body.to_vec(), timeout)
        .await
}

/// What a receiver does, written against the spec rather than our `sign`.
fn assert_signed(request: &Recorded, id: &str) {
    assert_eq!(request.header("webhook-id"), Some(id));
    let timestamp = request
        .header("webhook-timestamp")
        .expect("webhook-timestamp");
    let sent: u64 = timestamp.parse().expect("timestamp in seconds");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(sent.abs_diff(now) <= 5, "timestamp {sent} vs now {now}");

    let key = STANDARD
        .decode(KEY.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&request.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(request.header("webhook-signature"), Some(expected.as_str()));
}

#[tokio::test]
async fn a_2xx_json_answer_is_delivered_with_its_body() {
    let server = Server::start(|_| {
        reply(
            "200 OK",
            &[("content-type", "application/json")],
            br#"{"ok":true,"id":42}"#,
        )
    })
    .await;
    let push = Push::new(loopback(), 1024).unwrap();
    let body = br#"{"job":"7","input":{"x":1}}"#;

    let outcome = deliver(&push, &server.url("/hook?token=t"), body, TIMEOUT).await;
    assert_eq!(
        outcome,
        PushOutcome::Delivered(json!({"ok": true, "id": 42}))
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/hook?token=t")
    );
    assert_eq!(request.body, body);
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(
        request
            .header("user-agent")
            .unwrap()
            .starts_with("conveyor/")
    );
    assert_signed(request, "msg_2kD7");
}

#[tokio::test]
async fn other_2xx_bodies_become_null_or_text() {
    let server = Server::start(|request| match request.path.as_str() {
        "/empty" => reply("204 No Content", &[], b""),
        _ => reply("202 Accepted", &[], b"queued \xff"),
    })
    .await;
    let push = Push::new(loopback(), 1024).unwrap();
    assert_eq!(
        deliver(&push, &server.url("/empty"), b"{}", TIMEOUT).await,
        PushOutcome::Delivered(serde_json::Value::Null)
    );
    assert_eq!(
        deliver(&push, &server.url("/text"), b"{}", TIMEOUT).await,
        PushOutcome::Delivered(json!("queued \u{fffd}"))
    );
}

#[tokio::test]
async fn a_listed_host_name_is_called_on_its_checked_address() {
    let server = Server::start(|_| reply("200 OK", &[], b"[1]")).await;
    let push = Push::new(OutboundPolicy::parse("localhost").unwrap(), 1024).unwrap();
    let url = format!("http://localhost:{}/hook", server.addr.port());
    assert_eq!(
        deliver(&push, &url, b"{}", TIMEOUT).await,
        PushOutcome::Delivered(json!([1]))
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header("host"),
        Some(format!("localhost:{}", server.addr.port()).as_str())
    );
    assert_signed(&requests[0], "msg_2kD7");
}

#[tokio::test]
async fn a_503_with_retry_after_is_retried_after_that() {
    let server = Server::start(|_| {
        reply(
            "503 Service Unavailable",
            &[("retry-after", "7")],
            b"overloaded,\n try later",
        )
    })
    .await;
    let push = Push::new(loopback(), 1024).unwrap();
    assert_eq!(
        deliver(&push, &server.url("/"), b"{}", TIMEOUT).await,
        PushOutcome::Retry {
            error: "endpoint answered 503 Service Unavailable: overloaded, try later".into(),
            after: Some(Duration::from_secs(7)),
        }
    );
}

#[tokio::test]
async fn a_4xx_fails_with_status_and_excerpt() {
    let long = "x".repeat(10_000);
    let server =
        Server::start(move |_| reply("422 Unprocessable Entity", &[], long.as_bytes())).await;
    let push = Push::new(loopback(), 64 * 1024).unwrap();
    let PushOutcome::Failed(error) = deliver(&push, &server.url("/"), b"{}", TIMEOUT).await else {
        panic!("expected a failure");
    };
    assert!(
        error.starts_with("endpoint answered 422 Unprocessable Entity: xxx"),
        "{error}"
    );
    assert!(error.chars().count() < 260, "{error}");
}

#[tokio::test]
async fn a_redirect_fails_and_its_target_is_never_requested() {
    let server = Server::start(|request| match request.path.as_str() {
        "/hook" => reply("302 Found", &[("location", "/elsewhere")], b""),
        _ => reply("200 OK", &[], b"{}"),
    })
    .await;
    let push = Push::new(loopback(), 1024).unwrap();
    let outcome = deliver(&push, &server.url("/hook"), b"{}", TIMEOUT).await;
    assert_eq!(
        outcome,
        PushOutcome::Failed(
            "endpoint answered 302 Found, and redirects are not followed (to /elsewhere)".into()
        )
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/hook"]);
}

#[tokio::test]
async fn a_body_over_the_limit_fails() {
    let big = vec![b'a'; 2000];
    let exact = format!("\"{}\"", "b".repeat(1022));
    let server = Server::start(move |request| match request.path.as_str() {
        "/declared" => reply("200 OK", &[], &big),
        "/exact" => reply("200 OK", &[], exact.as_bytes()),
        // No length: the body runs until the connection closes.
        _ => {
            let mut raw = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
            raw.extend_from_slice(&big);
            Reply::Raw(raw)
        }
    })
    .await;
    let push = Push::new(loopback(), 1024).unwrap();
    for path in ["/declared", "/undeclared"] {
        assert_eq!(
            deliver(&push, &server.url(path), b"{}", TIMEOUT).await,
            PushOutcome::Failed("the response body exceeds 1024 bytes".into()),
            "{path}"
        );
    }
    assert_eq!(
        deliver(&push, &server.url("/exact"), b"{}", TIMEOUT).await,
        PushOutcome::Delivered(json!("b".repeat(1022))),
        "a body of exactly the limit is fine"
    );
}

#[tokio::test]
async fn a_body_cut_off_mid_read_is_retried() {
    let server = Server::start(|_| {
        Reply::Raw(
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{\"par".to_vec(),
        )
    })
    .await;
    let push = Push::new(loopback(), 1024).unwrap();
    let outcome = deliver(&push, &server.url("/"), b"{}", TIMEOUT).await;
    let PushOutcome::Retry { error, after: None } = outcome else {
        panic!("expected a retry, got {outcome:?}");
    };
    assert!(
        error.starts_with("the response body was cut off"),
        "{error}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_is_retried_after_the_timeout() {
    let server = Server::start(|_| Reply::Hang).await;
    let push = Push::new(loopback(), 1024).unwrap();
    let started = Instant::now();
    let outcome = deliver(&push, &server.url("/"), b"{}", Duration::from_millis(300)).await;
    let took = started.elapsed();
    assert_eq!(
        outcome,
        PushOutcome::Retry {
            error: "endpoint did not answer within 300ms".into(),
            after: None
        }
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn without_the_allow_entry_the_server_sees_nothing() {
    let server = Server::start(|_| reply("200 OK", &[], b"{}")).await;
    let push = Push::new(OutboundPolicy::default(), 1024).unwrap();
    assert_eq!(
        deliver(&push, &server.url("/hook"), b"{}", TIMEOUT).await,
        PushOutcome::Failed(
            "127.0.0.1 is a loopback address; list it in CONVEYOR_OUTBOUND_ALLOW to allow it"
                .into()
        )
    );
    let url = format!("http://localhost:{}/hook", server.addr.port());
    let PushOutcome::Failed(error) = deliver(&push, &url, b"{}", TIMEOUT).await else {
        panic!("localhost is refused too");
    };
    assert!(
        error.starts_with("localhost resolves to 127.0.0.1, a loopback address"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn unusable_endpoints_fail_and_unreachable_ones_are_retried() {
    let push = Push::new(loopback(), 1024).unwrap();
    let PushOutcome::Failed(error) = deliver(&push, "not a url", b"{}", TIMEOUT).await else {
        panic!("a malformed URL cannot succeed later");
    };
    assert!(
        error.starts_with("the endpoint URL is not valid"),
        "{error}"
    );
    assert_eq!(
        deliver(&push, "ftp://127.0.0.1/", b"{}", TIMEOUT).await,
        PushOutcome::Failed("the endpoint URL scheme \"ftp\" is not http or https".into())
    );

    // A port nobody listens on any more.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let outcome = deliver(&push, &format!("http://{closed}/"), b"{}", TIMEOUT).await;
    let PushOutcome::Retry { error, after: None } = outcome else {
        panic!("expected a retry, got {outcome:?}");
    };
    assert!(
        error.starts_with("could not reach the endpoint: tcp connect error: "),
        "{error}"
    );
    assert!(!error.contains("http://"), "no URL in the message: {error}");
}
