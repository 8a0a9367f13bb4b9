//! Server-sent events of one job's snapshots.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conveyor_schemas::Job;
use futures_util::Stream;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::auth::Caller;
use crate::service::JobService;

/// A comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

struct Follow {
    job: Job,
    pending: bool,
    changes: broadcast::Receiver<Arc<Job>>,
    service: Arc<JobService>,
    caller: Caller,
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
    caller: Caller,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let follow = Follow {
        job: first,
        pending: true,
        changes,
        service,
        caller,
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
    let id = follow.job.id;
    let keep_alive = tokio::time::sleep(KEEP_ALIVE);
    tokio::pin!(keep_alive);
    loop {
        let newer = tokio::select! {
            _ = &mut keep_alive => return Next::KeepAlive,
            change = follow.changes.recv() => match change {
                Ok(job) if job.id == id => Some((*job).clone()),
                Ok(_) => None,
                // Missed some changes: the job as it is now stands in for them.
                Err(RecvError::Lagged(_)) => follow.service.get(&follow.caller, id).await.ok(),
                Err(RecvError::Closed) => return Next::Closed,
            }
        };
        if let Some(job) = newer.filter(|job| job.version > follow.job.version) {
            follow.job = job;
            return Next::Snapshot;
        }
    }
}
