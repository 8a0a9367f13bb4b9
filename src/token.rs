use chrono::{Duration, Utc};
use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    tenant: &'a str,
    scope: &'a str,
    exp: i64,
    iat: i64,
}

/// An HS256 token as the API expects it.
pub fn mint(
    secret: &[u8],
    tenant: &str,
    subject: &str,
    scope: &str,
    valid_for: Duration,
) -> String {
    let now = Utc::now();
    let claims = Claims {
        sub: subject,
        tenant,
        scope,
        exp: (now + valid_for).timestamp(),
        iat: now.timestamp(),
    };
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing cannot fail")
}

/// A fresh random secret, for `conveyor dev` when none is configured.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
