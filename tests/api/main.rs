//! The client contract, driven over HTTP against a real server on port 0, on the stack
//! `CONVEYOR_TEST_STACK` names (embedded by default); and separate api and worker processes on
//! the real stacks (`stack`).

mod helpers;

mod auth;
mod burst;
mod cancel;
mod docs;
mod events;
mod hostile;
mod idempotency;
mod list;
mod polling;
mod proxy;
mod pull_workers;
mod push;
mod queues;
mod quotas;
mod restart;
mod retries;
mod schedule;
mod stack;
mod submit;
mod submit_properties;
mod tenants;
