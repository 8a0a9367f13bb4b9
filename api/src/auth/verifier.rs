//! Token verification: which keys and algorithms are trusted, and what a valid token must claim.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::Caller;
use super::jwks::{Jwks, JwksError, JwksSettings, Key};
use super::secret::Secret;
use crate::problem::ApiError;

/// Which tokens are valid.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Verifies HS256 tokens that name no key: the ones `conveyor token` mints.
    pub secret: Option<Secret>,
    /// Verifies RS256, ES256 and EdDSA tokens, by the key their `kid` names.
    pub jwks: Option<JwksSettings>,
    /// The `iss` that tokens signed by JWKS keys must carry; not checked when unset.
    pub issuer: Option<String>,
    /// The `aud` that tokens signed by JWKS keys must carry; not checked when unset.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Checks tokens. The key decides the algorithm, never the token: a token names a JWKS key with
/// `kid` or, naming none, is checked with the secret; its `alg` must be the one its key verifies.
/// So `alg: none`, and an HS256 token keyed with a public key's bytes, are refused.
#[derive(Clone)]
pub struct Authenticator(Arc<Inner>);

struct Inner {
    settings: AuthSettings,
    secret: Option<Arc<Key>>,
    jwks: Option<Arc<Jwks>>,
    /// Tokens signed with the secret are Conveyor's own, minted without issuer or audience.
    secret_rules: Validation,
    /// One set of rules per algorithm a JWKS key verifies (jsonwebtoken wants every algorithm it
    /// is given to suit the key), built once rather than per request.
    jwks_rules: Vec<Validation>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    tenant: String,
    #[serde(default)]
    scope: String,
}

/// The part of a token's header that picks its key.
#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

impl Authenticator {
    /// Reads the JWKS, when there is one, and keeps it fresh while the authenticator lives.
    pub async fn connect(settings: AuthSettings) -> Result<Authenticator, JwksError> {
        let jwks = match &settings.jwks {
            Some(jwks) => Some(Jwks::load(jwks).await?),
            None => None,
        };
        let secret = settings.secret.as_ref().map(|secret| {
            Key::new(
                Algorithm::HS256,
                DecodingKey::from_secret(secret.expose().as_bytes()),
            )
        });
        let secret_rules = rules(&settings, Algorithm::HS256);
        let jwks_rules = JWKS_ALGORITHMS
            .iter()
            .map(|&algorithm| {
                let mut rules = rules(&settings, algorithm);
                if let Some(issuer) = &settings.issuer {
                    rules.set_issuer(&[issuer]);
                    rules.required_spec_claims.insert("iss".into());
                }
                if let Some(audience) = &settings.audience {
                    rules.set_audience(&[audience]);
                    rules.validate_aud = true;
                    rules.required_spec_claims.insert("aud".into());
                }
                rules
            })
            .collect();
        Ok(Authenticator(Arc::new(Inner {
            settings,
            secret,
            jwks,
            secret_rules,
            jwks_rules,
        })))
    }

    /// The caller `token` speaks for, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let header = header(token)?;
        let (key, rules) = self.key_for(&header).await?;
        match header.alg.parse::<Algorithm>() {
            Ok(alg) if alg == key.algorithm => {}
            Ok(alg) => {
                return Err(refused(format!(
                    "it says `alg: {alg:?}`, but its key verifies {:?} only",
                    key.algorithm
                )));
            }
            Err(_) => {
                return Err(refused(format!(
                    "its `alg` is not one Conveyor verifies; its key verifies {:?}",
                    key.algorithm
                )));
            }
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, rules)
            .map_err(|error| self.refusal(error.kind()))?
            .claims;
        storable_claim("tenant", &claims.tenant, MAX_TENANT_CHARS)?;
        storable_claim("sub", &claims.sub, MAX_SUBJECT_CHARS)?;
        Ok(Caller {
            subject: claims.sub,
            tenant: claims.tenant,
            scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
        })
    }

    async fn key_for(&self, header: &Header) -> Result<(Arc<Key>, &Validation), ApiError> {
        let inner = &*self.0;
        match (&header.kid, &inner.jwks, &inner.secret) {
            (Some(kid), Some(jwks), _) => {
                let key = jwks
                    .key(kid)
                    .await
                    .ok_or_else(|| refused("the key it names (`kid`) is not in the JWKS"))?;
                let rules = inner
                    .jwks_rules
                    .iter()
                    .find(|rules| rules.algorithms == [key.algorithm])
                    .ok_or_else(|| ApiError::Internal("a JWKS key of no known algorithm".into()))?;
                Ok((key, rules))
            }
            (_, _, Some(secret)) => Ok((secret.clone(), &inner.secret_rules)),
            (None, Some(_), None) => Err(refused("it names no key (`kid`) of the JWKS")),
            (_, None, None) => Err(refused("no key is configured to verify tokens")),
        }
    }

    fn refusal(&self, error: &ErrorKind) -> ApiError {
        let settings = &self.0.settings;
        refused(match error {
            ErrorKind::ExpiredSignature => "it has expired".into(),
            ErrorKind::ImmatureSignature => "it is not valid yet (`nbf`)".into(),
            ErrorKind::InvalidSignature => "its signature does not match its key".into(),
            ErrorKind::InvalidIssuer => format!(
                "its issuer (`iss`) is not `{}`",
                settings.issuer.as_deref().unwrap_or_default()
            ),
            ErrorKind::InvalidAudience => format!(
                "its audience (`aud`) is not `{}`",
                settings.audience.as_deref().unwrap_or_default()
            ),
            ErrorKind::MissingRequiredClaim(claim) => format!("it has no `{claim}` claim"),
            ErrorKind::Json(_) => "its claims must include `sub`, `tenant` and `exp`".into(),
            _ => "it is malformed".into(),
        })
    }
}

/// Keys and secrets stay out of `Debug`: only the settings show, the secret redacted.
impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Authenticator")
            .field(&self.0.settings)
            .finish()
    }
}

fn rules(settings: &AuthSettings, algorithm: Algorithm) -> Validation {
    let mut rules = Validation::new(algorithm);
    rules.set_required_spec_claims(&["exp", "sub"]);
    rules.leeway = settings.leeway.as_secs();
    rules.validate_nbf = true;
    rules.validate_aud = false;
    rules
}

/// The algorithms a JWKS key can verify (see `jwks::verifying_key`).
const JWKS_ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

fn header(token: &str) -> Result<Header, ApiError> {
    let header: Header = token
        .split_once('.')
        .and_then(|(header, _)| URL_SAFE_NO_PAD.decode(header).ok())
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| refused("it is not a JWT"))?;
    if header.alg.eq_ignore_ascii_case("none") {
        return Err(refused("it is unsigned (`alg: none`)"));
    }
    Ok(header)
}

/// Longest `tenant` claim: what the store's tenant column holds.
const MAX_TENANT_CHARS: usize = 128;
const MAX_SUBJECT_CHARS: usize = 256;

/// A claim the store, logs and keys can hold: 1 to `max` characters, none of them a control
/// character (a NUL, which PostgreSQL refuses, a line break, which would forge log lines).
fn storable_claim(name: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(refused(format!("its `{name}` claim is empty")));
    }
    if value.chars().count() > max {
        return Err(refused(format!(
            "its `{name}` claim is longer than {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(refused(format!(
            "its `{name}` claim holds a control character"
        )));
    }
    Ok(())
}

fn refused(reason: impl Into<String>) -> ApiError {
    ApiError::InvalidToken(reason.into())
}
