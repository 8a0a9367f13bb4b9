//! The client contract, driven over HTTP against a real server on port 0 (embedded default).

mod helpers;

mod burst;
mod cancel;
mod docs;
mod events;
mod idempotency;
mod list;
mod polling;
mod restart;
mod retries;
mod schedule;
mod submit;
mod tenants;
