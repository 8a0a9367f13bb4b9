//! Token verification: which keys and algorithms are trusted, and what a valid token must claim.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::Caller;
use crate::problem::ApiError;

/// Checks tokens. Only HS256 is accepted, so `alg: none` and algorithm swaps are refused.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    tenant: String,
    #[serde(default)]
    scope: String,
}

impl Authenticator {
    pub fn hs256(secret: &[u8]) -> Authenticator {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        Authenticator {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// The caller `token` speaks for, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|error| {
                ApiError::InvalidToken(match error.kind() {
                    ErrorKind::ExpiredSignature => "it has expired".into(),
                    ErrorKind::ImmatureSignature => "it is not valid yet".into(),
                    ErrorKind::InvalidSignature => "its signature does not match".into(),
                    ErrorKind::InvalidAlgorithm => "only HS256 tokens are accepted".into(),
                    ErrorKind::MissingRequiredClaim(claim) => format!("it has no `{claim}` claim"),
                    ErrorKind::Json(_) => {
                        "its claims must include `sub`, `tenant` and `exp`".into()
                    }
                    _ => "it is malformed".into(),
                })
            })?
            .claims;
        if claims.tenant.is_empty() {
            return Err(ApiError::InvalidToken("its `tenant` claim is empty".into()));
        }
        Ok(Caller {
            subject: claims.sub,
            tenant: claims.tenant,
            scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
        })
    }
}
