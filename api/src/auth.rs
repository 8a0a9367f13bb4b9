//! Bearer JWT authentication (HS256) and per-route scopes.

use std::future::{Ready, ready};
use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

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

    fn verify(&self, token: &str) -> Result<Caller, ApiError> {
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

/// Who is calling, from a verified token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub subject: String,
    pub tenant: String,
    scopes: Vec<String>,
}

impl Caller {
    fn require(&self, scope: &'static str) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s == scope || s == "admin") {
            Ok(())
        } else {
            Err(ApiError::MissingScope(scope))
        }
    }
}

/// A scope a route requires, as a type, so that [`Scoped`] checks it while extracting, before the
/// body is read: a caller without the scope learns nothing about what its body would get.
pub trait Scope {
    const NAME: &'static str;
}

macro_rules! scopes {
    ($($(#[$doc:meta])* $marker:ident = $name:literal;)*) => {$(
        $(#[$doc])*
        pub struct $marker;

        impl Scope for $marker {
            const NAME: &'static str = $name;
        }
    )*};
}

scopes! {
    /// Submit and cancel jobs.
    JobsWrite = "jobs:write";
    /// Read and list jobs and job types.
    JobsRead = "jobs:read";
    /// Follow a job's event stream.
    EventsRead = "events:read";
}

/// A caller whose token carries the scope `S` (or `admin`): the extractor of every `/v1` route.
pub struct Scoped<S>(pub Caller, pub PhantomData<S>);

impl<S: Scope> FromRequest for Scoped<S> {
    type Error = ApiError;
    type Future = Ready<Result<Scoped<S>, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(request).and_then(|caller| {
            caller.require(S::NAME)?;
            Ok(Scoped(caller, PhantomData))
        }))
    }
}

fn authenticate(request: &HttpRequest) -> Result<Caller, ApiError> {
    let authenticator = request
        .app_data::<web::Data<Authenticator>>()
        .ok_or_else(|| ApiError::Internal("no authenticator configured".into()))?;
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::MissingToken)?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::InvalidToken("use `Authorization: Bearer <token>`".into()))?;
    authenticator.verify(token)
}
