//! Delivery of Conveyor's "push" jobs.
//!
//! A push job is handed to an HTTP endpoint that an operator registered: the
//! worker POSTs the job's JSON there, signed the way the Standard Webhooks
//! specification (<https://www.standardwebhooks.com/>) says, so receivers can
//! verify it with any of that specification's libraries. The answer decides
//! the attempt: delivered with a result, worth retrying (maybe after a pause
//! the endpoint asked for), or failed for good.
//!
//! Endpoints are URLs that anyone able to register one controls, which makes
//! the worker a way into the network it runs in. So every call passes an
//! SSRF guard ([`OutboundPolicy`]) that refuses loopback, private, link-local,
//! metadata and other non-public addresses unless the operator listed them,
//! and the connection goes to the checked addresses only.
//!
//! The crate knows nothing of jobs: the worker pool builds the body, calls
//! [`Push::deliver`] and maps the [`PushOutcome`] into its own terms.

mod delivery;
mod outbound;
mod outcome;

pub use delivery::Push;
pub use outbound::{
    ALLOW_VAR, AddressClass, OutboundPolicy, PolicyError, Refused, ResolveError, classify,
};
pub use outcome::PushOutcome;
