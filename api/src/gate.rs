//! What every `/v1` request passes before its route: the bearer token is verified, the tenant's
//! rate limit taken from, and the caller and its limits kept for the route. Every answer to a
//! known tenant says where it stands (`RateLimit-Policy` and `RateLimit`, IETF
//! draft-ietf-httpapi-ratelimit-headers).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};
use conveyor_store::{Rate, RateLimiter, Verdict};

use crate::auth::{Authenticator, Caller, bearer_token};
use crate::metrics;
use crate::problem::{ApiError, retry_after_secs};
use crate::tenants::{Policies, TenantLimits};

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Which allowance a request draws on.
#[derive(Debug, Clone, Copy)]
enum Policy {
    Submit,
    Read,
}

impl Policy {
    fn of(method: &Method) -> Policy {
        if method == Method::GET || method == Method::HEAD {
            Policy::Read
        } else {
            Policy::Submit
        }
    }

    fn name(self) -> &'static str {
        match self {
            Policy::Submit => "submit",
            Policy::Read => "read",
        }
    }

    fn rate(self, limits: &TenantLimits) -> Option<Rate> {
        match self {
            Policy::Submit => limits.submit,
            Policy::Read => limits.read,
        }
    }
}

pub(crate) async fn admit(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let (authenticator, policies, limiter) = match (
        request.app_data::<web::Data<Authenticator>>(),
        request.app_data::<web::Data<Policies>>(),
        request.app_data::<web::Data<dyn RateLimiter>>(),
    ) {
        (Some(a), Some(p), Some(l)) => (a.clone(), p.clone(), l.clone()),
        _ => return Err(ApiError::Internal("the gate is not configured".into()).into()),
    };
    let caller = match bearer_token(request.headers()) {
        Ok(token) => authenticator.verify(token).await,
        Err(error) => Err(error),
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(error) => return Ok(request.into_response(error.error_response())),
    };
    let limits = policies.of(&caller.tenant).clone();
    let policy = Policy::of(request.method());
    let standing = match policy.rate(&limits) {
        None => None,
        Some(rate) => Some((rate, take(&**limiter, &caller, policy, rate).await)),
    };
    if let Some((rate, verdict)) = standing
        && !verdict.allowed
    {
        metrics::RATE_LIMITED
            .with_label_values(&[policy.name()])
            .inc();
        let refusal = ApiError::RateLimited {
            policy: policy.name(),
            retry_after: verdict.retry_after,
        };
        let mut response = request.into_response(refusal.error_response());
        describe(response.headers_mut(), policy, rate, verdict);
        return Ok(response);
    }
    request.extensions_mut().insert(caller);
    request.extensions_mut().insert(limits);
    let mut response = next.call(request).await?.map_into_boxed_body();
    if let Some((rate, verdict)) = standing {
        describe(response.headers_mut(), policy, rate, verdict);
    }
    Ok(response)
}

/// Takes one request from the caller's allowance.
async fn take(limiter: &dyn RateLimiter, caller: &Caller, policy: Policy, rate: Rate) -> Verdict {
    // The tenant goes in with its length: `a:b` + `c` must not meet `a` + `b:c`.
    let key = format!(
        "{}:{}:{}",
        caller.tenant.len(),
        caller.tenant,
        policy.name()
    );
    limiter.take(&key, rate).await
}

fn describe(headers: &mut HeaderMap, policy: Policy, rate: Rate, verdict: Verdict) {
    let name = policy.name();
    let policy_value = format!(
        "\"{name}\";q={};w={}",
        rate.burst(),
        retry_after_secs(rate.window())
    );
    let standing = format!(
        "\"{name}\";r={};t={}",
        verdict.remaining,
        retry_after_secs(verdict.reset)
    );
    for (header, value) in [(&RATELIMIT_POLICY, policy_value), (&RATELIMIT, standing)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(header.clone(), value);
        }
    }
}
