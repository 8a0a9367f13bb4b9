//! Server-sent events of one job's snapshots.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conveyor_schemas::Job;
use conveyor_store::JobWatch;
use futures_util::Stream;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::service::JobService;
use crate::waits::WaitPlace;

/// A comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

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
    watch: JobWatch,
    service: Arc<JobService>,
    _place: WaitPlace,
}

enum Next {
    Snapshot,
    KeepAlive,
    Closed,
}

/// `first`, then every newer snapshot of the same job, ending after a terminal one. `watch` must
/// have been made before `first` was read.
pub(crate) fn job_events(
    first: Job,
    watch: JobWatch,
    service: Arc<JobService>,
    place: WaitPlace,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let follow = Follow {
        job: first,
        pending: true,
        watch,
        service,
        _place: place,
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
    let changed = follow.service.next_change(&mut follow.watch, &follow.job);
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
