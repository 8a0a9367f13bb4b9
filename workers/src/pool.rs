use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor_events::{
    BrokerError, Command, CommandError, Delivery, Lane, Queues, Subscription, Topics,
};
use conveyor_schemas::Job;
use conveyor_store::{Ledger, LiveCatalog};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::attempt::{self, Attempt};
use crate::consumed::{Following, QueueChoice, Subscribed};
use crate::fair::FairQueue;
use crate::{Backoff, Push, Registry};

/// Messages claimed from the broker in one go, at most.
const MAX_CLAIM: usize = 256;
/// Pause after the broker fails to hand out work, before asking again.
const RECV_RETRY_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Attempts running at once in this process. It holds more messages unacknowledged: the
    /// running ones, and as many received ahead on each lane of each queue it consumes.
    pub concurrency: usize,
    /// The most of the `concurrency` slots one tenant may hold, in percent (rounded up): the rest
    /// stay free for other tenants' jobs however long one tenant's jobs run.
    pub tenant_share_percent: u8,
    /// Jobs started per turn for the tenants named (from the tenants file); others start one.
    pub tenant_weights: HashMap<String, u32>,
    /// Time limit of an attempt whose job sets no `timeout_ms`.
    pub default_timeout: Duration,
    pub backoff: Backoff,
    /// How long a shutdown waits for running attempts before handing them back to the broker.
    pub shutdown_grace: Duration,
    /// The queues whose jobs run here.
    pub queues: QueueChoice,
    /// Delivers the jobs of push types.
    pub push: Arc<Push>,
}

/// A pool of workers in one process: claims commands in batches, runs up to `concurrency` at once,
/// tenants in turn (see [`FairQueue`]).
pub struct WorkerPool {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) queues: Arc<Queues>,
    pub(crate) ledger: Ledger,
    pub(crate) registry: Registry,
    /// The job types as registered: tells the types whose jobs HTTP workers claim.
    pub(crate) catalog: Arc<LiveCatalog>,
    pub(crate) settings: WorkerSettings,
    /// The attempts running here, by job.
    pub(crate) running: Mutex<HashMap<Uuid, Arc<Attempt>>>,
    /// Who this process is, as the holder of leases on the jobs it runs.
    pub(crate) holder: Uuid,
    /// Per type with a `concurrency` cap, how many of its jobs in a row found it at the cap here.
    pub(crate) at_cap: Mutex<HashMap<String, u32>>,
}

impl WorkerPool {
    pub fn new(
        queues: Arc<Queues>,
        ledger: Ledger,
        registry: Registry,
        catalog: Arc<LiveCatalog>,
        settings: WorkerSettings,
    ) -> WorkerPool {
        WorkerPool {
            shared: Arc::new(Shared {
                queues,
                ledger,
                registry,
                catalog,
                settings,
                running: Mutex::default(),
                holder: Uuid::now_v7(),
                at_cap: Mutex::default(),
            }),
        }
    }

    /// Runs until `shutdown`: then stops claiming, lets running attempts finish within the grace
    /// period, and hands back the rest (unacknowledged, so the broker redelivers them).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BrokerError> {
        let shared = self.shared;
        let mut following = Following::new(shared.settings.queues.clone(), Topics::WORKERS);
        let subscribed = following
            .subscribe_new(&shared.queues, &shared.catalog)
            .await?;
        let watcher = tokio::spawn(watch_cancellations(shared.clone(), shutdown.clone()));
        let slots = shared.settings.concurrency;
        let share = FairQueue::<Received>::share_of(slots, shared.settings.tenant_share_percent);
        let mut queue = FairQueue::new(slots, share, shared.settings.tenant_weights.clone());
        let (arrivals, mut arrived) = mpsc::channel(MAX_CLAIM);
        let stop_receiving = CancellationToken::new();
        let receivers = tokio::spawn(receive_all(
            shared.clone(),
            following,
            subscribed,
            arrivals,
            stop_receiving.clone(),
        ));
        let mut attempts = JoinSet::new();
        let mut tenants_of = HashMap::new();
        tracing::info!(
            concurrency = slots,
            tenant_share = share,
            queues = ?shared.settings.queues,
            "Worker pool started."
        );
        loop {
            while let Some((tenant, received)) = queue.next() {
                let shared = shared.clone();
                let Received {
                    lane,
                    delivery,
                    job,
                    ..
                } = received;
                let started = attempts.spawn(async move {
                    attempt::process(&shared, lane, delivery, job).await;
                });
                tenants_of.insert(started.id(), tenant);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(ended) = attempts.join_next_with_id(), if !attempts.is_empty() => {
                    let id = match ended {
                        Ok((id, ())) => id,
                        Err(error) => error.id(),
                    };
                    if let Some(tenant) = tenants_of.remove(&id) {
                        queue.finished(&tenant);
                    }
                }
                received = arrived.recv() => match received {
                    Some(received) => {
                        let tenant = received.tenant.clone();
                        queue.push(&tenant, received);
                    }
                    None => break,
                },
            }
        }
        stop_receiving.cancel();
        let subscriptions = receivers.await.unwrap_or_default();
        // Received and not started: handed back (dropped unsettled) for another worker.
        drop(arrived);
        let handed_back = queue.waiting();
        drop(queue);
        let in_flight = attempts.len();
        tracing::info!(in_flight, handed_back, grace = ?shared.settings.shutdown_grace, "Worker pool draining.");
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
        drop(subscriptions);
        watcher.abort();
        tracing::info!("Worker pool stopped.");
        Ok(())
    }
}

/// A delivery received and not started yet, holding one of the places ahead of the slots.
struct Received {
    lane: Lane,
    tenant: String,
    delivery: Delivery,
    job: Result<Job, CommandError>,
    _place: OwnedSemaphorePermit,
}

/// Receives from every queue chosen, and from each new one as it appears, until `stop`; then
/// gives the subscriptions back, still open. Each lane's receiver stays ahead of the free slots by
/// as many deliveries again, so that another tenant's job can be seen behind one tenant's jobs,
/// and no lane (nor queue) is held up by another.
async fn receive_all(
    shared: Arc<Shared>,
    mut following: Following,
    mut subscribed: Vec<Subscribed>,
    arrivals: mpsc::Sender<Received>,
    stop: CancellationToken,
) -> Vec<Box<dyn Subscription>> {
    let slots = shared.settings.concurrency;
    let mut receivers = Vec::new();
    loop {
        for Subscribed { lane, subscription } in subscribed {
            receivers.push(tokio::spawn(receive(
                lane,
                subscription,
                Arc::new(Semaphore::new(slots)),
                arrivals.clone(),
                stop.clone(),
            )));
        }
        match following
            .next_new(&shared.queues, &shared.catalog, &stop)
            .await
        {
            Some(new) => subscribed = new,
            None => break,
        }
    }
    futures_util::future::join_all(receivers)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

/// Receives deliveries from `lane` while a place is free, decodes whose they are, and hands them
/// to the pool, until `stop`; then gives the subscription back, still open.
async fn receive(
    lane: Lane,
    mut subscription: Box<dyn Subscription>,
    places: Arc<Semaphore>,
    arrivals: mpsc::Sender<Received>,
    stop: CancellationToken,
) -> Box<dyn Subscription> {
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return subscription,
            place = places.clone().acquire_owned() => place.expect("the semaphore is never closed"),
        };
        let mut claimed = vec![first];
        while claimed.len() < MAX_CLAIM {
            match places.clone().try_acquire_owned() {
                Ok(place) => claimed.push(place),
                Err(_) => break,
            }
        }
        let received = tokio::select! {
            _ = stop.cancelled() => return subscription,
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
        for (delivery, place) in deliveries.into_iter().zip(claimed) {
            let job = match Command::decode(&delivery.payload) {
                Ok(Command::RunJob { job }) => Ok(job),
                Err(error) => Err(error),
            };
            // An undecodable command is nobody's: it is dead-lettered as soon as a slot is free.
            let tenant = job
                .as_ref()
                .map(|job| job.tenant.clone())
                .unwrap_or_default();
            let received = Received {
                lane,
                tenant,
                delivery,
                job,
                _place: place,
            };
            if arrivals.send(received).await.is_err() {
                return subscription;
            }
        }
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
