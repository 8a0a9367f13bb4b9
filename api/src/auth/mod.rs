//! Bearer JWT authentication and per-route scopes.

mod jwks;
mod secret;
mod verifier;

use std::future::{Ready, ready};
use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use crate::problem::ApiError;

pub use jwks::{JwksError, JwksSettings};
pub use secret::Secret;
pub use verifier::{AuthSettings, Authenticator};

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
    /// Claim and run jobs of `pull` types, of every tenant (HTTP workers).
    JobsWork = "jobs:work";
    /// Manage the deployment: register and remove job types. Also grants every other scope.
    Admin = "admin";
}

/// A caller whose token carries the scope `S` (or `admin`): the extractor of every `/v1` route.
/// The gate in front of `/v1` has verified the token already.
pub struct Scoped<S>(pub Caller, pub PhantomData<S>);

impl<S: Scope> FromRequest for Scoped<S> {
    type Error = ApiError;
    type Future = Ready<Result<Scoped<S>, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let caller = request.extensions().get::<Caller>().cloned();
        ready(
            caller
                .ok_or_else(|| ApiError::Internal("a /v1 route is not behind the gate".into()))
                .and_then(|caller| {
                    caller.require(S::NAME)?;
                    Ok(Scoped(caller, PhantomData))
                }),
        )
    }
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::MissingToken)?;
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::InvalidToken("use `Authorization: Bearer <token>`".into()))
}
