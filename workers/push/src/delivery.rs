//! Sending one push: sign, POST to the checked addresses, read the answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use reqwest::dns::{Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Response, Url, redirect};
use tokio::time::{Instant, timeout_at};

use crate::outbound::{OutboundPolicy, ResolveError, host_name};
use crate::outcome::{PushOutcome, Verdict, answer_error, excerpt, outcome_of, result_of};
use conveyor_schemas::SigningSecret;

const USER_AGENT: &str = concat!("conveyor/", env!("CARGO_PKG_VERSION"));

/// Enough of a failed answer's body for an excerpt; the rest is not read.
const ERROR_BODY_PREFIX: usize = 4096;

/// Pinned clients kept for reuse of their connections. Each host (and set
/// of addresses it resolved to) has one; past this many they all go.
const MAX_PINNED: usize = 256;

/// Delivers pushes. One per worker pool: it keeps connections per host.
#[derive(Debug)]
pub struct Push {
    /// For IP-literal endpoints, which need no resolution to pin.
    client: reqwest::Client,
    policy: OutboundPolicy,
    max_body: usize,
    /// For host-name endpoints, keyed by host and the addresses it was
    /// checked on: a client only ever connects to those.
    pinned: Mutex<HashMap<(String, Vec<SocketAddr>), reqwest::Client>>,
}

impl Push {
    /// A sender that never follows redirects nor uses proxies from the
    /// environment, and reads at most `max_body` bytes of a response.
    pub fn new(policy: OutboundPolicy, max_body: usize) -> Result<Push, reqwest::Error> {
        Ok(Push {
            client: client_builder().build()?,
            policy,
            max_body,
            pinned: Mutex::new(HashMap::new()),
        })
    }

    /// POSTs `body` as JSON to `endpoint`, signed with `secret` per Standard
    /// Webhooks, within `timeout` for the whole exchange, and says what the
    /// answer means for the attempt.
    pub async fn deliver(
        &self,
        endpoint: &str,
        message_id: &str,
        secret: &SigningSecret,
        body: Vec<u8>,
        timeout: Duration,
    ) -> PushOutcome {
        let url = match Url::parse(endpoint) {
            Ok(url) => url,
            // The URL itself stays out: its query may hold the receiver's token.
            Err(e) => return PushOutcome::Failed(format!("the endpoint URL is not valid: {e}")),
        };
        let deadline = Instant::now() + timeout;
        let response = match timeout_at(deadline, self.send(url, message_id, secret, body)).await {
            Ok(Ok(response)) => response,
            Ok(Err(outcome)) => return outcome,
            Err(_) => {
                return retry(format!("endpoint did not answer within {timeout:?}"));
            }
        };
        self.judge(response, deadline, timeout).await
    }

    async fn send(
        &self,
        url: Url,
        message_id: &str,
        secret: &SigningSecret,
        body: Vec<u8>,
    ) -> Result<Response, PushOutcome> {
        let addrs = match self.policy.resolve(&url).await {
            Ok(addrs) => addrs,
            Err(ResolveError::Refused(refused)) => {
                return Err(PushOutcome::Failed(refused.to_string()));
            }
            Err(lookup @ ResolveError::Lookup { .. }) => return Err(retry(lookup.to_string())),
        };
        let client = self
            .client_for(&url, addrs)
            .map_err(|e| retry(format!("could not set up the connection: {}", describe(e))))?;
        let timestamp = unix_now();
        let signature = secret.sign(message_id, timestamp, &body);
        let request = client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        request.send().await.map_err(|e| {
            if e.is_builder() {
                PushOutcome::Failed(format!("the request could not be built: {}", describe(e)))
            } else {
                retry(format!("could not reach the endpoint: {}", describe(e)))
            }
        })
    }

    async fn judge(
        &self,
        mut response: Response,
        deadline: Instant,
        timeout: Duration,
    ) -> PushOutcome {
        let status = response.status();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header(RETRY_AFTER);
        let location = header(LOCATION);
        match outcome_of(status, retry_after.as_deref(), SystemTime::now()) {
            Verdict::Delivered => {
                let too_large = || {
                    PushOutcome::Failed(format!(
                        "the response body exceeds {} bytes",
                        self.max_body
                    ))
                };
                if response
                    .content_length()
                    .is_some_and(|len| len > self.max_body as u64)
                {
                    return too_large();
                }
                match read_body(&mut response, self.max_body, deadline).await {
                    Ok(body) => PushOutcome::Delivered(result_of(&body)),
                    Err(BodyError::TooLarge) => too_large(),
                    Err(BodyError::Cut(e)) => {
                        retry(format!("the response body was cut off: {}", describe(e)))
                    }
                    Err(BodyError::TimedOut) => retry(format!(
                        "the response body did not arrive within {timeout:?}"
                    )),
                }
            }
            Verdict::Retry { after } => {
                let body = read_prefix(&mut response, self.max_body, deadline).await;
                PushOutcome::Retry {
                    error: answer_error(status, None, &body),
                    after,
                }
            }
            Verdict::Failed => {
                let body = read_prefix(&mut response, self.max_body, deadline).await;
                PushOutcome::Failed(answer_error(status, location.as_deref(), &body))
            }
        }
    }

    /// A client that connects to `addrs` and nowhere else.
    ///
    /// The addresses were checked a moment ago; resolving the name again at
    /// connect time would let a DNS answer that changed in between (DNS
    /// rebinding) walk past the check.
    fn client_for(
        &self,
        url: &Url,
        mut addrs: Vec<SocketAddr>,
    ) -> Result<reqwest::Client, reqwest::Error> {
        let Some(host) = host_name(url) else {
            return Ok(self.client.clone());
        };
        addrs.sort_unstable();
        let key = (host.to_string(), addrs);
        let mut pinned = self.pinned.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = pinned.get(&key) {
            return Ok(client.clone());
        }
        let client = client_builder().resolve_to_addrs(host, &key.1).build()?;
        if pinned.len() >= MAX_PINNED {
            pinned.clear();
        }
        pinned.insert(key, client.clone());
        Ok(client)
    }
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .no_proxy()
        .use_rustls_tls()
        .user_agent(USER_AGENT)
        // Belt and braces: a name that was not pinned fails to resolve
        // instead of reaching whatever the system resolver says.
        .dns_resolver(Arc::new(NoDns))
}

/// The resolver behind the pins, refusing every name.
struct NoDns;

impl Resolve for NoDns {
    fn resolve(&self, name: Name) -> Resolving {
        let error = format!(
            "{} was not checked against the outbound policy",
            name.as_str()
        );
        Box::pin(std::future::ready(Err(error.into())))
    }
}

enum BodyError {
    TooLarge,
    Cut(reqwest::Error),
    TimedOut,
}

/// The whole body, if it fits in `limit` bytes.
async fn read_body(
    response: &mut Response,
    limit: usize,
    deadline: Instant,
) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    loop {
        match timeout_at(deadline, response.chunk()).await {
            Err(_) => return Err(BodyError::TimedOut),
            Ok(Err(e)) => return Err(BodyError::Cut(e)),
            Ok(Ok(None)) => return Ok(body),
            Ok(Ok(Some(chunk))) => {
                if body.len() + chunk.len() > limit {
                    return Err(BodyError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
}

/// The start of a body that only serves as an excerpt: whatever arrived,
/// since the status has decided already.
async fn read_prefix(response: &mut Response, limit: usize, deadline: Instant) -> Vec<u8> {
    let limit = limit.min(ERROR_BODY_PREFIX);
    let mut body = Vec::new();
    while body.len() < limit {
        match timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(limit);
    body
}

fn retry(error: String) -> PushOutcome {
    PushOutcome::Retry { error, after: None }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A reqwest error and its causes as one line, without the URL (its query
/// may hold the receiver's token).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = next {
        let text = e.to_string();
        // Wrappers that say no more than the sentence around them.
        let generic = matches!(
            text.as_str(),
            "error sending request" | "client error (Connect)"
        );
        if !generic && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    excerpt(&parts.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pinned_client_connects_to_the_checked_address_only() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = vec![0u8; 4096];
            let n = socket.read(&mut head).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&head[..n]).into_owned()
        });

        let push = Push::new(OutboundPolicy::default(), 1024).unwrap();
        // `.invalid` never resolves: only the pin can have taken it anywhere.
        let url = Url::parse(&format!("http://rebind.invalid:{port}/hook")).unwrap();
        let pinned = push
            .client_for(&url, vec![SocketAddr::from(([127, 0, 0, 1], port))])
            .unwrap();
        let response = pinned.get(url.clone()).send().await.unwrap();
        assert_eq!(response.status(), 204);
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(
            head.contains(&format!("host: rebind.invalid:{port}")),
            "{head}"
        );

        // Another host on the same clients is not resolved at all.
        let other = Url::parse(&format!("http://localhost:{port}/")).unwrap();
        let error = pinned.get(other).send().await.unwrap_err();
        assert!(describe(error).contains("not checked against the outbound policy"));
        let error = push.client.get(url).send().await.unwrap_err();
        assert!(describe(error).contains("not checked against the outbound policy"));
    }

    #[test]
    fn deliveries_can_be_spawned() {
        fn spawnable<T: Send + 'static>(_: &T) {}
        let push = Arc::new(Push::new(OutboundPolicy::default(), 1024).unwrap());
        let secret = SigningSecret::generate();
        let delivery = async move {
            push.deliver("http://8.8.8.8/", "m", &secret, Vec::new(), Duration::ZERO)
                .await
        };
        spawnable(&delivery);
    }

    #[test]
    fn pinned_clients_are_reused_per_host_and_addresses() {
        let push = Push::new(OutboundPolicy::default(), 1024).unwrap();
        let url = Url::parse("https://hooks.example/x").unwrap();
        let a = SocketAddr::from(([192, 0, 2, 1], 443));
        let b = SocketAddr::from(([192, 0, 2, 2], 443));
        push.client_for(&url, vec![a, b]).unwrap();
        push.client_for(&url, vec![b, a]).unwrap();
        assert_eq!(push.pinned.lock().unwrap().len(), 1);
        push.client_for(&url, vec![a]).unwrap();
        assert_eq!(push.pinned.lock().unwrap().len(), 2);
        // IP literals need no pin.
        let literal = Url::parse("https://192.0.2.1/x").unwrap();
        push.client_for(&literal, vec![a]).unwrap();
        assert_eq!(push.pinned.lock().unwrap().len(), 2);
    }
}
