use std::sync::Arc;
use std::time::Duration;

use conveyor_events::{BrokerError, Command, Delivery, Queues, Subscription, Topics, dead_letter};
use conveyor_schemas::Job;
use conveyor_store::{Change, Ledger, LiveCatalog, StoreError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::consumed::{Following, QueueChoice, Subscribed};

/// Commands recorded in one go: they share the store's group commits.
const RECORD_BATCH: usize = 512;
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Records every accepted job in the store as soon as it is published, in its own consumer group
/// on every queue, so lists and cold-cache lookups see jobs however far behind the workers are.
pub struct Recorder {
    queues: Arc<Queues>,
    ledger: Ledger,
    catalog: Arc<LiveCatalog>,
}

impl Recorder {
    pub fn new(queues: Arc<Queues>, ledger: Ledger, catalog: Arc<LiveCatalog>) -> Recorder {
        Recorder {
            queues,
            ledger,
            catalog,
        }
    }

    /// Records from both lanes of every queue, and of each new queue as its first type is
    /// registered, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BrokerError> {
        let recorder = Arc::new(self);
        let mut following = Following::new(QueueChoice::Every, Topics::RECORDER);
        let mut lanes = JoinSet::new();
        let mut subscribed = following
            .subscribe_new(&recorder.queues, &recorder.catalog)
            .await?;
        loop {
            for Subscribed { subscription, .. } in subscribed {
                let (recorder, shutdown) = (recorder.clone(), shutdown.clone());
                lanes.spawn(async move { recorder.record_lane(subscription, &shutdown).await });
            }
            match following
                .next_new(&recorder.queues, &recorder.catalog, &shutdown)
                .await
            {
                Some(new) => subscribed = new,
                None => break,
            }
        }
        while lanes.join_next().await.is_some() {}
        Ok(())
    }

    async fn record_lane(
        &self,
        mut subscription: Box<dyn Subscription>,
        shutdown: &CancellationToken,
    ) {
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = subscription.recv(RECORD_BATCH) => received,
            };
            match received {
                Ok(deliveries) => {
                    let recorded = deliveries.into_iter().map(|delivery| self.record(delivery));
                    futures_util::future::join_all(recorded).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "The broker did not hand out commands to record; asking again shortly.");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }

    /// A job the store refuses to hold fails (where the cache shows it) and is dead-lettered,
    /// where its command is kept whole for an operator; its command is then done with, so that it
    /// holds up nothing behind it.
    async fn unstorable(&self, delivery: Delivery, job: &Job, reason: &str) {
        tracing::error!(job_id = %job.id, %reason, "The store refuses the job; failing and dead-lettering it.");
        let failed = match self.ledger.unstorable(job).await {
            Ok(Change::Applied(failed)) => failed,
            Ok(Change::Declined(current, _)) => current,
            Err(error) => {
                tracing::warn!(job_id = %job.id, %error, "Could not show the job failed; dead-lettering it all the same.");
                job.clone()
            }
        };
        match dead_letter(&self.queues, &failed).await {
            Ok(()) => {
                let _ = delivery.ack().await;
            }
            Err(error) => {
                tracing::error!(job_id = %job.id, %error, "Could not dead-letter the job; handing the command back.");
                tokio::time::sleep(RETRY_PAUSE).await;
                let _ = delivery.nack().await;
            }
        }
    }

    async fn record(&self, delivery: Delivery) {
        // An undecodable command is the workers' to dead-letter; there is nothing to record.
        let Ok(Command::RunJob { job }) = Command::decode(&delivery.payload) else {
            let _ = delivery.ack().await;
            return;
        };
        match self.ledger.record(&job).await {
            Ok(()) => {
                if let Err(error) = delivery.ack().await {
                    tracing::warn!(job_id = %job.id, %error, "Acknowledgement failed; the job may be recorded again.");
                }
            }
            Err(StoreError::Refused(reason)) => self.unstorable(delivery, &job, &reason).await,
            Err(error) => {
                tracing::error!(job_id = %job.id, %error, "Could not record the job; handing the command back.");
                tokio::time::sleep(RETRY_PAUSE).await;
                let _ = delivery.nack().await;
            }
        }
    }
}
