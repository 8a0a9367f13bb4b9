//! Verification keys published as a JWKS (RFC 7517), read from a file or an http(s) URL and kept
//! fresh, so that keys rotate without a restart.

use std::collections::HashMap;
use std::error::Error;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Least time between two fetches set off by tokens naming a key not held: a key rotated in is
/// found this soon, and a flood of made-up `kid`s costs the key server one fetch per period.
const UNKNOWN_KID_COOLDOWN: Duration = Duration::from_secs(5);
/// A key server slower than this counts as unreachable, so that a request naming a new key is not
/// held for long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The most a key server may answer; a JWKS of many keys is a few kilobytes.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Where the keys are published and how often they are read again.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    /// A file path, or an `http://` or `https://` URL.
    pub location: String,
    pub refresh_every: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The file or the key server cannot be read now; it may be later.
    #[error("cannot read the JWKS: {0}")]
    Unreachable(String),
    #[error("the JWKS is not usable: {0}")]
    Invalid(String),
}

/// A key that verifies one algorithm, the one its type implies.
pub(super) struct Key {
    pub(super) algorithm: Algorithm,
    pub(super) decoding: DecodingKey,
}

impl Key {
    pub(super) fn new(algorithm: Algorithm, decoding: DecodingKey) -> Arc<Key> {
        Arc::new(Key {
            algorithm,
            decoding,
        })
    }
}

type KeySet = HashMap<String, Arc<Key>>;

/// The keys of the last good read, by `kid`.
pub(super) struct Jwks {
    location: Location,
    keys: RwLock<KeySet>,
    /// When the keys were last read, held while they are read so that reads never overlap.
    last_read: Mutex<Instant>,
}

enum Location {
    File(PathBuf),
    Http {
        url: String,
        client: reqwest::Client,
    },
}

impl Jwks {
    /// Reads the keys, and keeps reading them every `refresh_every` for as long as they are used.
    pub(super) async fn load(settings: &JwksSettings) -> Result<Arc<Jwks>, JwksError> {
        let location = Location::parse(&settings.location)?;
        let keys = location.read().await?;
        let jwks = Arc::new(Jwks {
            location,
            keys: RwLock::new(keys),
            last_read: Mutex::new(Instant::now()),
        });
        tokio::spawn(refresh_periodically(
            Arc::downgrade(&jwks),
            settings.refresh_every,
        ));
        Ok(jwks)
    }

    /// The key `kid` names. One not held sets off a read, unless one was made lately.
    pub(super) async fn key(&self, kid: &str) -> Option<Arc<Key>> {
        if let Some(key) = self.held(kid) {
            return Some(key);
        }
        {
            let mut last_read = self.last_read.lock().await;
            // Requests that queued behind a read find its keys without reading again.
            if last_read.elapsed() >= UNKNOWN_KID_COOLDOWN {
                self.refresh(&mut last_read).await;
            }
        }
        self.held(kid)
    }

    fn held(&self, kid: &str) -> Option<Arc<Key>> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.get(kid).cloned()
    }

    async fn refresh(&self, last_read: &mut Instant) {
        *last_read = Instant::now();
        match self.location.read().await {
            Ok(keys) => *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys,
            Err(error) => tracing::warn!(
                %error,
                jwks = %self.location,
                "Could not refresh the JWKS; keeping the keys read last."
            ),
        }
    }
}

async fn refresh_periodically(jwks: Weak<Jwks>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(jwks) = jwks.upgrade() else {
            return;
        };
        let mut last_read = jwks.last_read.lock().await;
        jwks.refresh(&mut last_read).await;
    }
}

impl Location {
    fn parse(location: &str) -> Result<Location, JwksError> {
        if location.starts_with("http://") || location.starts_with("https://") {
            let client = reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                // Reads are minutes apart and come from any HTTP worker's runtime: a pooled
                // connection would be stale, or tied to another runtime.
                .pool_max_idle_per_host(0)
                .build()
                .map_err(|error| JwksError::Invalid(causes(&error)))?;
            return Ok(Location::Http {
                url: location.to_owned(),
                client,
            });
        }
        match location.strip_prefix("file://") {
            Some(path) => Ok(Location::File(path.into())),
            None if location.contains("://") => Err(JwksError::Invalid(format!(
                "`{location}` is neither a file path nor an http(s) URL"
            ))),
            None => Ok(Location::File(location.into())),
        }
    }

    async fn read(&self) -> Result<KeySet, JwksError> {
        let body = match self {
            Location::File(path) => tokio::fs::read(path)
                .await
                .map_err(|error| JwksError::Unreachable(format!("{}: {error}", path.display())))?,
            Location::Http { url, client } => {
                let mut response = client
                    .get(url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|error| JwksError::Unreachable(causes(&error)))?;
                let mut body = Vec::new();
                while let Some(chunk) = response
                    .chunk()
                    .await
                    .map_err(|error| JwksError::Unreachable(causes(&error)))?
                {
                    // A key server that answers without end must not fill this process's memory.
                    if body.len() + chunk.len() > MAX_JWKS_BYTES {
                        return Err(JwksError::Unreachable(format!(
                            "{url} answered more than {MAX_JWKS_BYTES} bytes"
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                body
            }
        };
        parse(&body)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Http { url, .. } => f.write_str(url),
        }
    }
}

/// An error and what caused it: reqwest says "error sending request" and keeps the reason (a
/// refused connection, a timeout) in its sources.
fn causes(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

/// The keys that can verify tokens. One a key server publishes for something else (encryption,
/// another curve) is skipped, saying why, rather than failing the others.
fn parse(body: &[u8]) -> Result<KeySet, JwksError> {
    let document: Document = serde_json::from_slice(body)
        .map_err(|error| JwksError::Invalid(format!("it is not a JWK set ({error})")))?;
    let mut keys = KeySet::new();
    for jwk in document.keys {
        let kid = jwk["kid"].as_str().unwrap_or_default().to_owned();
        match verifying_key(jwk) {
            Ok((kid, key)) => {
                keys.insert(kid, key);
            }
            Err(reason) => tracing::warn!(%kid, %reason, "Skipping a JWKS key."),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::Invalid(
            "it holds no RSA, P-256 or Ed25519 signing key with a `kid`".into(),
        ));
    }
    Ok(keys)
}

/// The algorithm comes from the key type, and a JWK's `alg`, when it has one, must agree: a token
/// never chooses how it is checked.
fn verifying_key(jwk: serde_json::Value) -> Result<(String, Arc<Key>), String> {
    let jwk: Jwk = serde_json::from_value(jwk).map_err(|error| error.to_string())?;
    let kid = jwk
        .common
        .key_id
        .clone()
        .ok_or("it has no `kid`, so no token can name it")?;
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Err("it is an encryption key (`use: enc`)".into());
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return Err("it is not an RSA, P-256 or Ed25519 key".into()),
    };
    if let Some(stated) = jwk.common.key_algorithm
        && stated.to_string().parse::<Algorithm>().ok() != Some(algorithm)
    {
        return Err(format!(
            "its `alg` is {stated}, but the key verifies {algorithm:?}"
        ));
    }
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|error| error.to_string())?;
    Ok((kid, Key::new(algorithm, decoding)))
}
