//! One delivery of a `job.run.v1` command, from claim to acknowledgement.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use conveyor_events::{Command, Delivery, Outgoing};
use conveyor_schemas::{Job, JobStatus};
use conveyor_store::Change;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::handler::{Handler, JobContext, JobError};
use crate::metrics;
use crate::pool::Shared;

/// Pause before handing a message back after a failure to record, so that a database outage does
/// not turn into a hot redelivery loop.
const REDELIVERY_PAUSE: Duration = Duration::from_millis(500);
/// How long a worker's claim on a running job outlives its last renewal (every third of it): the
/// most a dead worker's job waits before another worker takes it over.
const LEASE: Duration = Duration::from_secs(10);

/// What to do with a delivery once handled.
enum Settle {
    /// Done with: its outcome (or its part in one) is recorded.
    Ack,
    /// Not now: hand it back to be delivered again shortly.
    Later,
}

#[derive(Debug)]
enum Outcome {
    Succeeded(Value),
    Cancelled,
    Failed(JobError),
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Store(#[from] conveyor_store::StoreError),
    #[error(transparent)]
    Broker(#[from] conveyor_events::BrokerError),
}

/// Handles a delivery and settles it: acknowledged once its outcome is recorded, handed back
/// otherwise.
pub(crate) async fn process(shared: &Shared, delivery: Delivery) {
    let job = match Command::decode(&delivery.payload) {
        Ok(Command::RunJob { job }) => job,
        Err(error) => {
            tracing::error!(key = %delivery.key, %error, "Dead-lettering an undecodable command.");
            let dead = Outgoing::now(delivery.key.clone(), delivery.payload.clone());
            match shared
                .broker
                .publish(&shared.topics.dead_letter(), vec![dead])
                .await
            {
                Ok(()) => {
                    let _ = delivery.ack().await;
                }
                Err(error) => {
                    tracing::error!(%error, "Could not dead-letter the command; it will be redelivered.");
                    hand_back(delivery).await;
                }
            }
            return;
        }
    };
    let job_id = job.id;
    match handle(shared, job).await {
        Ok(Settle::Later) => hand_back(delivery).await,
        Ok(Settle::Ack) => {
            if let Err(error) = delivery.ack().await {
                tracing::warn!(%job_id, %error, "Acknowledgement failed; the command may be redelivered.");
            }
        }
        Err(error) => {
            tracing::error!(%job_id, %error, "Could not record the attempt; handing the command back.");
            hand_back(delivery).await;
        }
    }
}

/// Gives a delivery back for another try, after a pause.
async fn hand_back(delivery: Delivery) {
    tokio::time::sleep(REDELIVERY_PAUSE).await;
    let _ = delivery.nack().await;
}

#[tracing::instrument(skip_all, fields(job_id = %command_job.id, job_type = %command_job.job_type))]
async fn handle(shared: &Shared, command_job: Job) -> Result<Settle, AttemptError> {
    let ledger = &shared.ledger;
    let current = ledger.current(&command_job).await?;
    if current.status.is_terminal() {
        // A redelivery: whatever failed after the outcome reached the cache last time (the store
        // write, the dead-lettering) is done again; both are idempotent for readers.
        if current.status == JobStatus::Failed {
            dead_letter(shared, &current).await?;
        }
        ledger.store().write(current).await?;
        return Ok(Settle::Ack);
    }
    let now = Utc::now();
    if let Some(run_at) = current.run_at.filter(|at| *at > now)
        && current.status != JobStatus::Running
    {
        // Not due yet: the broker holds it until it is.
        hold_until(shared, &current, run_at).await?;
        return Ok(Settle::Ack);
    }
    if current.status == JobStatus::Running && current.cancel_requested {
        // Its worker died after the client asked to cancel: nothing left to stop.
        finish(shared, &current, Outcome::Cancelled).await?;
        return Ok(Settle::Ack);
    }
    let Some(handler) = shared.registry.get(&current.job_type) else {
        let error = format!("no worker handles jobs of type `{}`", current.job_type);
        finish(
            shared,
            &current,
            Outcome::Failed(JobError::Permanent(error)),
        )
        .await?;
        return Ok(Settle::Ack);
    };
    // Registered before the job shows `running`, so a cancel request can never miss it; and only
    // one delivery of a job is handled here at a time.
    let Some(registered) = Registered::claim(shared, current.id) else {
        return Ok(if current.status == JobStatus::Running {
            // A second delivery of an attempt running here: that attempt records the outcome.
            Settle::Ack
        } else {
            // Another delivery of this job is being handled here right now: look again later.
            Settle::Later
        });
    };
    // One worker at a time runs a job: a `running` job whose worker lives (and so renews its
    // lease) is not taken over, however its message came here (a Kafka rebalance, a requeue).
    let Some(lease) = Lease::take(shared, current.id).await else {
        return Ok(Settle::Later);
    };
    let Change::Applied(running) = ledger.update(&current, |job| start(job, &current)).await?
    else {
        return Ok(Settle::Ack);
    };
    metrics::QUEUE_WAIT_SECONDS
        .with_label_values(&[&running.job_type])
        .observe(
            (now - current.run_at.unwrap_or(current.created_at))
                .to_std()
                .unwrap_or_default()
                .as_secs_f64(),
        );
    if running.attempts > running.max_attempts {
        let lost = JobError::Permanent(format!(
            "the worker running attempt {} was lost, and no attempts remain",
            running.max_attempts
        ));
        finish(shared, &running, Outcome::Failed(lost)).await?;
        return Ok(Settle::Ack);
    }
    let outcome = lease
        .renewing(execute(shared, handler, &running, &registered.cancel))
        .await;
    // Still registered (and leased) while the outcome is recorded, so that no other delivery of
    // the job mistakes it for an attempt whose worker was lost.
    finish(shared, &running, outcome).await?;
    lease.release().await;
    drop(registered);
    Ok(Settle::Ack)
}

/// A job being handled by this process, with its attempt's cancellation signal, findable by job
/// id while the attempt runs.
struct Registered<'a> {
    shared: &'a Shared,
    job_id: uuid::Uuid,
    cancel: CancellationToken,
}

impl<'a> Registered<'a> {
    /// `None` when this process is handling the job already.
    fn claim(shared: &'a Shared, job_id: uuid::Uuid) -> Option<Registered<'a>> {
        let cancel = CancellationToken::new();
        match shared.running.lock().unwrap().entry(job_id) {
            std::collections::hash_map::Entry::Occupied(_) => None,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(cancel.clone());
                Some(Registered {
                    shared,
                    job_id,
                    cancel,
                })
            }
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.shared.running.lock().unwrap().remove(&self.job_id);
    }
}

/// A worker's lease on a job it runs: renewed while its attempt runs, released once the outcome
/// is recorded (or, on any other way out, when dropped).
struct Lease {
    ledger: conveyor_store::Ledger,
    job_id: uuid::Uuid,
    holder: uuid::Uuid,
    released: bool,
}

impl Lease {
    /// `None` while another worker's lease on the job is live.
    async fn take(shared: &Shared, job_id: uuid::Uuid) -> Option<Lease> {
        let (ledger, holder) = (shared.ledger.clone(), shared.holder);
        ledger
            .hold_lease(job_id, holder, LEASE)
            .await
            .then_some(Lease {
                ledger,
                job_id,
                holder,
                released: false,
            })
    }

    /// Runs `attempt`, renewing the lease meanwhile. Renewed in the attempt's own task rather
    /// than a task of its own: most attempts end long before the first renewal.
    async fn renewing<T>(&self, attempt: impl Future<Output = T>) -> T {
        let renew = async {
            loop {
                tokio::time::sleep(LEASE / 3).await;
                if !self
                    .ledger
                    .hold_lease(self.job_id, self.holder, LEASE)
                    .await
                {
                    // Our renewals failed for a whole lease (a partition, a stall) and another
                    // worker took the job over: whichever records first, the outcome is one.
                    tracing::warn!(job_id = %self.job_id, "Another worker took over a job running here.");
                    return std::future::pending().await;
                }
            }
        };
        tokio::select! {
            outcome = attempt => outcome,
            never = renew => never,
        }
    }

    async fn release(mut self) {
        self.released = true;
        self.ledger.release_lease(self.job_id, self.holder).await;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (ledger, job_id, holder) = (self.ledger.clone(), self.job_id, self.holder);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { ledger.release_lease(job_id, holder).await });
        }
    }
}

/// The attempt may start if the job waits for one, or if it was already `running` when we looked
/// and has not changed since: its worker was lost, and this delivery is the broker's redelivery.
fn start(job: &Job, seen: &Job) -> Option<Job> {
    let takeover = job.status == JobStatus::Running && job.version == seen.version;
    (job.status.is_waiting() || takeover).then(|| Job {
        status: JobStatus::Running,
        attempts: job.attempts + 1,
        started_at: Some(Utc::now()),
        progress: None,
        run_at: None,
        ..job.clone()
    })
}

async fn execute(
    shared: &Shared,
    handler: Arc<dyn Handler>,
    running: &Job,
    cancel: &CancellationToken,
) -> Outcome {
    let timeout = running
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(shared.settings.default_timeout);
    metrics::RUNNING.inc();
    let timer = metrics::RUN_SECONDS
        .with_label_values(&[&running.job_type])
        .start_timer();
    let context = JobContext::new(running.clone(), shared.ledger.clone(), cancel.clone());
    let result = tokio::select! {
        result = tokio::time::timeout(timeout, handler.run(running.payload.clone(), context)) => {
            result.unwrap_or_else(|_| Err(JobError::Retryable(format!("timed out after {} ms", timeout.as_millis()))))
        }
        _ = cancel.cancelled() => Err(JobError::Permanent("cancelled".into())),
    };
    timer.observe_duration();
    metrics::RUNNING.dec();
    match result {
        Ok(value) => Outcome::Succeeded(value),
        Err(_) if cancel.is_cancelled() => Outcome::Cancelled,
        Err(error) => Outcome::Failed(error),
    }
}

/// Records how the attempt ended; schedules the next one or dead-letters the job.
async fn finish(shared: &Shared, attempt: &Job, outcome: Outcome) -> Result<(), AttemptError> {
    let now = Utc::now();
    let retry_at = match &outcome {
        Outcome::Failed(JobError::Retryable(_)) if attempt.attempts < attempt.max_attempts => {
            let delay = shared.settings.backoff.delay(attempt.attempts);
            Some(now + chrono::Duration::from_std(delay).unwrap_or_default())
        }
        _ => None,
    };
    let change = shared
        .ledger
        .update(attempt, |job| {
            if job.status.is_terminal() || job.attempts != attempt.attempts {
                return None;
            }
            let mut next = job.clone();
            // A cancel asked for during the attempt wins over anything but success.
            let outcome = match &outcome {
                Outcome::Failed(_) if job.cancel_requested => &Outcome::Cancelled,
                outcome => outcome,
            };
            match (outcome, retry_at) {
                (Outcome::Succeeded(result), _) => {
                    next.status = JobStatus::Succeeded;
                    next.result = Some(result.clone());
                    next.error = None;
                    next.progress = Some(1.0);
                }
                (Outcome::Cancelled, _) => {
                    next.status = JobStatus::Cancelled;
                    next.error = Some("cancelled at the client's request".into());
                }
                (Outcome::Failed(error), Some(at)) => {
                    next.status = JobStatus::Retrying;
                    next.error = Some(error.to_string());
                    next.run_at = Some(at);
                }
                (Outcome::Failed(error), None) => {
                    next.status = JobStatus::Failed;
                    next.error = Some(error.to_string());
                }
            }
            if next.status.is_terminal() {
                next.finished_at = Some(now);
            }
            Some(next)
        })
        .await?;
    let Change::Applied(recorded) = change else {
        return Ok(());
    };
    metrics::FINISHED
        .with_label_values(&[&recorded.job_type, recorded.status.as_str()])
        .inc();
    match recorded.status {
        JobStatus::Retrying => {
            let at = recorded.run_at.unwrap_or(now);
            hold_until(shared, &recorded, at).await?;
        }
        JobStatus::Failed => {
            tracing::warn!(
                error = recorded.error.as_deref().unwrap_or_default(),
                attempts = recorded.attempts,
                "Job failed; dead-lettering it."
            );
            dead_letter(shared, &recorded).await?;
        }
        _ => {}
    }
    Ok(())
}

async fn dead_letter(shared: &Shared, job: &Job) -> Result<(), AttemptError> {
    let dead = Outgoing::now(job.id.to_string(), run_command(job));
    Ok(shared
        .broker
        .publish(&shared.topics.dead_letter(), vec![dead])
        .await?)
}

async fn hold_until(
    shared: &Shared,
    job: &Job,
    at: chrono::DateTime<Utc>,
) -> Result<(), AttemptError> {
    let held = Outgoing::at(job.id.to_string(), run_command(job), at);
    Ok(shared
        .broker
        .publish(&shared.topics.jobs(), vec![held])
        .await?)
}

fn run_command(job: &Job) -> Vec<u8> {
    Command::RunJob { job: job.clone() }.encode()
}
