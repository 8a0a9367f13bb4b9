//! Server-sent events of one job's snapshots.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use conveyor_schemas::Job;
use futures_util::Stream;
use tokio::sync::broadcast;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::service::JobService;

/// A comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Event streams open on this server, per tenant: each holds a connection and a task for as long
/// as the client likes, so a tenant may hold only so many.
#[derive(Default)]
pub(crate) struct OpenStreams {
    per_tenant: Arc<Mutex<HashMap<String, usize>>>,
}

impl OpenStreams {
    /// A slot for one more stream of `tenant`, unless it holds `max` already.
    pub(crate) fn open(&self, tenant: &str, max: usize) -> Option<StreamSlot> {
        let mut per_tenant = self.per_tenant.lock().expect("no panic holds the lock");
        let open = per_tenant.entry(tenant.to_owned()).or_default();
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(StreamSlot {
            per_tenant: self.per_tenant.clone(),
            tenant: tenant.to_owned(),
        })
    }
}

/// One open stream; its place is given back when the stream ends or its client goes.
pub(crate) struct StreamSlot {
    per_tenant: Arc<Mutex<HashMap<String, usize>>>,
    tenant: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut per_tenant = self.per_tenant.lock().expect("no panic holds the lock");
        if let Some(open) = per_tenant.get_mut(&self.tenant) {
            *open -= 1;
            if *open == 0 {
                per_tenant.remove(&self.tenant);
            }
        }
    }
}

/// One event of a job's stream, as the OpenAPI document describes each event of the
/// `text/event-stream` answer: `id` is the job's version, `data` the job as JSON. Only a type to
/// describe with; the frames are written by [`job_events`].
pub(crate) enum JobEvent {}

impl PartialSchema for JobEvent {
    fn schema() -> RefOr<Schema> {
        // utoipa has no builder for `contentSchema`, so it goes in beside the other keywords.
        let job_as_json = ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("The job, as JSON"))
            .content_media_type("application/json")
            .extensions(Some(Extensions::from_iter([(
                "contentSchema",
                serde_json::to_value(Ref::from_schema_name(Job::name()))
                    .expect("a reference serializes"),
            )])));
        ObjectBuilder::new()
            .property(
                "id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("The job's version")),
            )
            .property("data", job_as_json)
            .required("id")
            .required("data")
            .into()
    }
}

impl ToSchema for JobEvent {}

struct Follow {
    job: Job,
    pending: bool,
    changes: broadcast::Receiver<Arc<Job>>,
    service: Arc<JobService>,
    _slot: StreamSlot,
}

enum Next {
    Snapshot,
    KeepAlive,
    Closed,
}

/// `first`, then every newer snapshot of the same job, ending after a terminal one. `changes` must
/// have been subscribed before `first` was read.
pub(crate) fn job_events(
    first: Job,
    changes: broadcast::Receiver<Arc<Job>>,
    service: Arc<JobService>,
    slot: StreamSlot,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let follow = Follow {
        job: first,
        pending: true,
        changes,
        service,
        _slot: slot,
    };
    futures_util::stream::unfold(Some(follow), |follow| async move {
        let mut follow = follow?;
        if !follow.pending {
            match next_change(&mut follow).await {
                Next::Snapshot => {}
                Next::KeepAlive => {
                    return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), Some(follow)));
                }
                Next::Closed => return None,
            }
        }
        follow.pending = false;
        let frame = format!(
            "id: {}\ndata: {}\n\n",
            follow.job.version,
            serde_json::to_string(&follow.job).expect("jobs always serialize")
        );
        let more = (!follow.job.status.is_terminal()).then_some(follow);
        Some((Ok(Bytes::from(frame)), more))
    })
}

/// Waits for a newer snapshot of the job (stored in `follow.job`) or for keep-alive time.
async fn next_change(follow: &mut Follow) -> Next {
    let changed = follow.service.next_change(&mut follow.changes, &follow.job);
    match tokio::time::timeout(KEEP_ALIVE, changed).await {
        Ok(Ok(Some(job))) => {
            follow.job = job;
            Next::Snapshot
        }
        Ok(Ok(None)) => Next::Closed,
        // A store that could not be read while catching up is tried again after a keep-alive.
        Ok(Err(_)) | Err(_) => Next::KeepAlive,
    }
}
