//! The rescuer: ends attempts whose worker was lost, so that no job stays `running` for good.
//!
//! A worker holds a lease on the job it runs and renews it while the attempt runs. A job can be
//! left `running` with no lease and no message to redeliver: its worker died after the broker
//! was told the message was handled (a redelivery settled elsewhere, a connection lost and
//! found again), or the lease and message were lost with the broker. One rescuer per deployment
//! (whichever process holds the rescuer's lease) sweeps the store for such jobs and puts them
//! back to their queue, counting the lost attempt; one that has used its attempts fails.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use conveyor_events::{Lane, Queues};
use conveyor_schemas::lifecycle::{Event, Kept};
use conveyor_store::{Change, Ledger, LiveCatalog, StoreError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::attempt::LEASE;
use crate::commands::follow_up;
use crate::duty::Duty;
use crate::metrics;

/// Jobs looked at per store query.
const PAGE: u64 = 256;
/// The id whose lease makes its holder the deployment's rescuer.
const RESCUER: Uuid = Uuid::from_u128(0x0c0e_7e70_0000_4000_8000_7265_7363_7565);

/// Sweeps every `every` while it is the deployment's rescuer.
pub struct Rescuer {
    queues: Arc<Queues>,
    ledger: Ledger,
    catalog: Arc<LiveCatalog>,
    every: Duration,
    duty: Duty,
}

/// A running job found without a lease, as it was then: it is rescued if it is found so again a
/// sweep later, unchanged.
type Suspects = HashMap<Uuid, (u32, u64)>;

#[derive(Debug, thiserror::Error)]
enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] conveyor_events::BrokerError),
}

impl Rescuer {
    /// `every` is also how long a job must stay without a lease before it is rescued; at least
    /// half a lease, so that a worker renewing its lease (every third of one) through a short
    /// cache hiccup is never taken for lost.
    pub fn new(
        queues: Arc<Queues>,
        ledger: Ledger,
        catalog: Arc<LiveCatalog>,
        every: Duration,
    ) -> Rescuer {
        let duty = Duty::new(ledger.cache().clone(), "rescuer", RESCUER);
        Rescuer {
            queues,
            ledger,
            catalog,
            every: every.max(LEASE / 2),
            duty,
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut suspects = Suspects::new();
        let mut ticks = tokio::time::interval(self.every);
        // Without the cache there are no leases to go by (nobody has the duty): a sweep would
        // take every running job for lost. It waits for the cache instead.
        while let Some(held) = self.duty.next_turn(&mut ticks, &shutdown).await {
            if !held {
                suspects.clear();
                continue;
            }
            match self.sweep(&suspects).await {
                Ok(found) => suspects = found,
                Err(error) => {
                    tracing::warn!(%error, "A rescuer's sweep stopped early; the next one starts over.")
                }
            }
        }
        self.duty.give_up().await;
    }

    /// Rescues the `suspects` of the sweep before that are still lost; returns this sweep's.
    async fn sweep(&self, suspects: &Suspects) -> Result<Suspects, SweepError> {
        let cache = self.ledger.cache();
        let cutoff = Utc::now() - chrono::Duration::from_std(LEASE).unwrap_or_default();
        let mut found = Suspects::new();
        let mut after = None;
        loop {
            let page = self
                .ledger
                .store()
                .running_before(cutoff, after, PAGE)
                .await?;
            for job in &page {
                if cache.lease_held(job.id).await? {
                    continue;
                }
                let seen = (job.attempts, job.version);
                if suspects.get(&job.id) != Some(&seen) {
                    found.insert(job.id, seen);
                } else if cache.hold_lease(job.id, self.duty.holder(), LEASE).await? {
                    // Under the lease, so that no worker starts the job while it is rescued.
                    let rescued = self.rescue(job).await;
                    cache.release_lease(job.id, self.duty.holder()).await?;
                    rescued?;
                }
            }
            match page.last() {
                Some(last) if page.len() as u64 == PAGE => after = Some((last.updated_at, last.id)),
                _ => return Ok(found),
            }
        }
    }

    async fn rescue(&self, job: &conveyor_schemas::Job) -> Result<(), SweepError> {
        let lost = Event::Rescue {
            attempt: job.attempts,
        };
        match self.ledger.apply(job, &lost).await? {
            Change::Applied(rescued) => {
                tracing::warn!(
                    job_id = %job.id,
                    attempt = job.attempts,
                    status = rescued.status.as_str(),
                    "Rescued a job whose worker was lost."
                );
                metrics::RESCUED
                    .with_label_values(&[&rescued.job_type])
                    .inc();
                // On the jobs lane, whichever it came by: it has waited once already.
                follow_up(&self.queues, &self.catalog, Lane::Jobs, &rescued).await?;
            }
            // The store missed the job's last change (its write failed, or its process died
            // before the write, after the cache took it): it gets it now.
            Change::Declined(current, Kept::Terminal | Kept::NotRunning) => {
                self.ledger.store().write(current).await?
            }
            Change::Declined(..) => {}
        }
        Ok(())
    }
}
