use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor_events::{Broker, BrokerError, Topics};
use conveyor_store::Ledger;
use tokio::sync::Semaphore;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::attempt::{self, Attempt};
use crate::{Backoff, Registry};

/// Messages claimed from the broker in one go, at most.
const MAX_CLAIM: usize = 256;
/// Pause after the broker fails to hand out work, before asking again.
const RECV_RETRY_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Attempts running at once in this process; also how many messages it holds unacknowledged.
    pub concurrency: usize,
    /// Time limit of an attempt whose job sets no `timeout_ms`.
    pub default_timeout: Duration,
    pub backoff: Backoff,
    /// How long a shutdown waits for running attempts before handing them back to the broker.
    pub shutdown_grace: Duration,
}

/// A pool of workers in one process: claims commands in batches, runs up to `concurrency` at once.
pub struct WorkerPool {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) ledger: Ledger,
    pub(crate) registry: Registry,
    pub(crate) topics: Topics,
    pub(crate) settings: WorkerSettings,
    /// The attempts running here, by job.
    pub(crate) running: Mutex<HashMap<Uuid, Arc<Attempt>>>,
    /// Who this process is, as the holder of leases on the jobs it runs.
    pub(crate) holder: Uuid,
}

impl WorkerPool {
    pub fn new(
        broker: Arc<dyn Broker>,
        ledger: Ledger,
        registry: Registry,
        topics: Topics,
        settings: WorkerSettings,
    ) -> WorkerPool {
        WorkerPool {
            shared: Arc::new(Shared {
                broker,
                ledger,
                registry,
                topics,
                settings,
                running: Mutex::default(),
                holder: Uuid::now_v7(),
            }),
        }
    }

    /// Runs until `shutdown`: then stops claiming, lets running attempts finish within the grace
    /// period, and hands back the rest (unacknowledged, so the broker redelivers them).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BrokerError> {
        let shared = self.shared;
        let mut subscription = shared
            .broker
            .subscribe(&shared.topics.jobs(), Topics::WORKERS)
            .await?;
        let watcher = tokio::spawn(watch_cancellations(shared.clone(), shutdown.clone()));
        let permits = Arc::new(Semaphore::new(shared.settings.concurrency));
        let mut attempts = JoinSet::new();
        tracing::info!(
            concurrency = shared.settings.concurrency,
            topic = %shared.topics.jobs(),
            "Worker pool started."
        );
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let mut claimed = vec![first];
            while claimed.len() < MAX_CLAIM {
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => claimed.push(permit),
                    Err(_) => break,
                }
            }
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                received = subscription.recv(claimed.len()) => received,
            };
            let deliveries = match received {
                Ok(deliveries) => deliveries,
                Err(error) => {
                    tracing::warn!(%error, "The broker did not hand out work; asking again shortly.");
                    tokio::time::sleep(RECV_RETRY_PAUSE).await;
                    continue;
                }
            };
            for (delivery, permit) in deliveries.into_iter().zip(claimed) {
                let shared = shared.clone();
                attempts.spawn(async move {
                    attempt::process(&shared, delivery).await;
                    drop(permit);
                });
            }
            while attempts.try_join_next().is_some() {}
        }
        let in_flight = attempts.len();
        tracing::info!(in_flight, grace = ?shared.settings.shutdown_grace, "Worker pool draining.");
        let drained = tokio::time::timeout(shared.settings.shutdown_grace, async {
            while attempts.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                handed_back = attempts.len(),
                "Grace period over; unfinished attempts go back to the broker."
            );
            attempts.shutdown().await;
        }
        // Left only now: a broker may hand a departed consumer's unsettled messages to another
        // (RabbitMQ requeues them when the channel closes), which would run the draining attempts
        // a second time.
        drop(subscription);
        watcher.abort();
        tracing::info!("Worker pool stopped.");
        Ok(())
    }
}

/// Tells running handlers when their job's cancellation is requested, whichever api replica took
/// the request.
async fn watch_cancellations(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut changes = shared.ledger.subscribe();
    loop {
        let change = tokio::select! {
            _ = shutdown.cancelled() => return,
            change = changes.recv() => change,
        };
        match change {
            Ok(job) if job.cancel_requested => {
                if let Some(attempt) = shared.running.lock().unwrap().get(&job.id) {
                    attempt.cancel.cancel();
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                // Catch up by asking about every job running here.
                tracing::warn!(
                    missed,
                    "Cancellation watcher fell behind; rechecking running jobs."
                );
                let ids: Vec<Uuid> = shared.running.lock().unwrap().keys().copied().collect();
                for id in ids {
                    if let Ok(Some(job)) = shared.ledger.get(id).await
                        && job.cancel_requested
                        && let Some(attempt) = shared.running.lock().unwrap().get(&id)
                    {
                        attempt.cancel.cancel();
                    }
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}
