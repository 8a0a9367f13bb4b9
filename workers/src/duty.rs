//! Work that one process of a deployment does at a time, whichever holds the duty's lease: a
//! lease like a job's, on an id that names no job.

use std::sync::Arc;
use std::time::Duration;

use conveyor_store::Cache;
use tokio::time::Interval;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub(crate) struct Duty {
    cache: Arc<dyn Cache>,
    /// Names the duty in logs.
    name: &'static str,
    lease: Uuid,
    holder: Uuid,
}

impl Duty {
    pub(crate) fn new(cache: Arc<dyn Cache>, name: &'static str, lease: Uuid) -> Duty {
        Duty {
            cache,
            name,
            lease,
            holder: Uuid::now_v7(),
        }
    }

    /// Waits for the next tick of `ticks`, then tells whether this process has the duty for the
    /// three ticks after it (taking or renewing its lease). `None` once `shutdown` is cancelled.
    pub(crate) async fn next_turn(
        &self,
        ticks: &mut Interval,
        shutdown: &CancellationToken,
    ) -> Option<bool> {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = ticks.tick() => {}
        }
        Some(self.hold(ticks.period() * 3).await)
    }

    /// Whether this process has the duty for the next `ttl` (taking or renewing its lease).
    /// Without the cache nobody has it: there is no lease to go by.
    async fn hold(&self, ttl: Duration) -> bool {
        match self.cache.hold_lease(self.lease, self.holder, ttl).await {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(duty = self.name, %error, "Skipping a round: the cache does not answer.");
                false
            }
        }
    }

    /// Who this process is, as a holder of leases.
    pub(crate) fn holder(&self) -> Uuid {
        self.holder
    }

    /// Leaves the duty to another process at once.
    pub(crate) async fn give_up(&self) {
        let _ = self.cache.release_lease(self.lease, self.holder).await;
    }
}
