//! One delivery of a `job.run.v1` command, from claim to acknowledgement.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use conveyor_events::{CommandError, Delivery, Lane, Outgoing, dead_letter};
use conveyor_schemas::lifecycle::{Event, Kept, Outcome};
use conveyor_schemas::{Job, JobMode, JobStatus};
use conveyor_store::{Change, StoreError, give_back_running_place, take_running_place};
use tokio_util::sync::CancellationToken;

use crate::commands::{follow_up, hold};
use crate::handler::{Handler, JobContext, JobError};
use crate::metrics;
use crate::pool::Shared;
use crate::push::PushDelivery;

/// Pause before handing a message back after a failure to record, so that a database outage does
/// not turn into a hot redelivery loop.
const REDELIVERY_PAUSE: Duration = Duration::from_millis(500);
/// How long a worker's claim on a running job outlives its last renewal (every third of it): the
/// most a dead worker's job waits before another worker (or the rescuer) takes it over.
pub(crate) const LEASE: Duration = Duration::from_secs(10);
/// How long a job of a type at its `concurrency` cap waits before it is delivered again, at least
/// and at most (see [`at_cap_wait`]).
const AT_CAP_WAIT: Duration = Duration::from_secs(1);
const AT_CAP_MAX_WAIT: Duration = Duration::from_secs(30);
/// Jobs found at the cap in a row that double the wait.
const AT_CAP_DOUBLING: u32 = 16;

/// What to do with a delivery once handled.
enum Settle {
    /// Done with: its outcome (or its part in one) is recorded.
    Ack,
    /// Not now: hand it back to be delivered again shortly.
    Later,
    /// Another delivery of a job whose attempt runs here, carrying the job at `version`: settled
    /// once that attempt ends (see [`settle_after`]).
    AfterAttempt(Arc<Attempt>, u64),
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] conveyor_events::BrokerError),
}

/// An attempt running in this process, findable by job id while it runs.
pub(crate) struct Attempt {
    /// Asked for when the client cancels the job.
    pub(crate) cancel: CancellationToken,
    /// Fired once the attempt is over, recorded or not.
    ended: CancellationToken,
    /// Whether its outcome was recorded (and followed up).
    recorded: AtomicBool,
    /// The job's version once the attempt started (0 before).
    started: AtomicU64,
}

/// Handles a delivery from `lane` (and the job its command carries, as decoded) and settles it:
/// acknowledged once its outcome is recorded, handed back otherwise. A next attempt stays on the
/// lane.
pub(crate) async fn process(
    shared: &Arc<Shared>,
    lane: Lane,
    delivery: Delivery,
    decoded: Result<Job, CommandError>,
) {
    let job = match decoded {
        Ok(job) => job,
        Err(error) => {
            tracing::error!(key = %delivery.key, %error, "Dead-lettering an undecodable command.");
            let dead = Outgoing::now(delivery.key.clone(), delivery.payload.clone());
            match shared
                .queues
                .broker()
                .publish(&shared.queues.topics().dead_letter(), vec![dead])
                .await
            {
                Ok(()) => acknowledge(delivery, None).await,
                Err(error) => {
                    tracing::error!(%error, "Could not dead-letter the command; it will be redelivered.");
                    hand_back(delivery).await;
                }
            }
            return;
        }
    };
    let job_id = job.id;
    match handle(shared, lane, job).await {
        Ok(Settle::Ack) => acknowledge(delivery, Some(job_id)).await,
        Ok(Settle::Later) => hand_back(delivery).await,
        Ok(Settle::AfterAttempt(attempt, version)) => {
            // Not acknowledged at once: if this process dies before the attempt's outcome is
            // recorded, this delivery is the job's only message left. It waits without a slot of
            // the pool, which it does not need.
            tokio::spawn(async move {
                attempt.ended.cancelled().await;
                let recorded = attempt.recorded.load(Ordering::Acquire);
                let started = attempt.started.load(Ordering::Acquire);
                match settle_after(recorded, started, version) {
                    AfterAttempt::Done => acknowledge(delivery, Some(job_id)).await,
                    AfterAttempt::Again => hand_back(delivery).await,
                }
            });
        }
        // The recorder fails and dead-letters a job the store refuses; trying again cannot help.
        Err(AttemptError::Store(StoreError::Refused(reason))) => {
            tracing::error!(%job_id, %reason, "The store refuses the job; leaving it to the recorder.");
            acknowledge(delivery, Some(job_id)).await;
        }
        Err(error) => {
            tracing::error!(%job_id, %error, "Could not record the attempt; handing the command back.");
            hand_back(delivery).await;
        }
    }
}

/// What becomes of a delivery that came while an attempt of its job ran here, once it ended.
#[derive(Debug, PartialEq)]
enum AfterAttempt {
    /// A copy of the command that started the attempt (a broker that lost its connection hands
    /// out again what was unacknowledged): the recorded attempt settled it.
    Done,
    /// Delivered again, to be handled like any: the attempt was not recorded, or this is the
    /// command of the job's next attempt (newer than the one that ran), which a retry due at once
    /// can send before the attempt has let go of the job.
    Again,
}

fn settle_after(recorded: bool, started_version: u64, delivered_version: u64) -> AfterAttempt {
    if recorded && delivered_version <= started_version {
        AfterAttempt::Done
    } else {
        AfterAttempt::Again
    }
}

async fn acknowledge(delivery: Delivery, job_id: Option<uuid::Uuid>) {
    if let Err(error) = delivery.ack().await {
        tracing::warn!(?job_id, %error, "Acknowledgement failed; the command may be redelivered.");
    }
}

/// Gives a delivery back for another try, after a pause.
async fn hand_back(delivery: Delivery) {
    tokio::time::sleep(REDELIVERY_PAUSE).await;
    let _ = delivery.nack().await;
}

#[tracing::instrument(skip_all, fields(job_id = %command_job.id, job_type = %command_job.job_type))]
async fn handle(shared: &Shared, lane: Lane, command_job: Job) -> Result<Settle, AttemptError> {
    let ledger = &shared.ledger;
    let delivered_version = command_job.version;
    let current = ledger.current(&command_job).await?;
    if current.status.is_terminal() {
        return ended(shared, current).await;
    }
    if shared
        .catalog
        .current()
        .get(&current.job_type)
        .map(|info| info.mode)
        == Some(JobMode::Pull)
    {
        // HTTP workers claim it from the store, where the recorder put it.
        return Ok(Settle::Ack);
    }
    if let Some(run_at) = current.run_at.filter(|at| *at > Utc::now())
        && current.status != JobStatus::Running
    {
        // Not due yet: the broker holds it until it is.
        hold(&shared.queues, &shared.catalog, lane, &current, run_at).await?;
        return Ok(Settle::Ack);
    }
    let Some(handler) = handler_of(shared, &current.job_type) else {
        // Left for a worker that runs it (a newer binary), never failed for want of one here.
        tracing::warn!("No handler for this job type here; handing the command back.");
        return Ok(Settle::Later);
    };
    // Registered before the job shows `running`, so a cancel request can never miss it; and only
    // one delivery of a job is handled here at a time.
    let registered = match Registered::claim(shared, current.id) {
        Ok(registered) => registered,
        Err(running_here) => return Ok(Settle::AfterAttempt(running_here, delivered_version)),
    };
    // One worker at a time runs a job: a `running` job whose worker lives (and so renews its
    // lease) is not taken over, however its message came here (a Kafka rebalance, a requeue).
    let Some(lease) = Lease::take(shared, current.id).await else {
        return Ok(Settle::Later);
    };
    let Some(place) = Place::take(shared, &current).await? else {
        // Its type runs as many attempts as its `concurrency` allows: the job waits on its queue,
        // without holding a slot here that another type's job could use.
        hold(
            &shared.queues,
            &shared.catalog,
            lane,
            &current,
            Utc::now() + at_cap_wait(met_cap(shared, &current.job_type)),
        )
        .await?;
        return Ok(Settle::Ack);
    };
    let mut waiting = current;
    if waiting.status == JobStatus::Running {
        // Running, yet nobody holds its lease and it does not run here: its worker was lost.
        let lost = Event::Rescue {
            attempt: waiting.attempts,
        };
        match ledger.apply(&waiting, &lost).await? {
            Change::Applied(rescued) if rescued.status.is_terminal() => {
                follow_up(&shared.queues, &shared.catalog, lane, &rescued).await?;
                return Ok(Settle::Ack);
            }
            Change::Applied(rescued) => waiting = rescued,
            Change::Declined(job, _) => waiting = job,
        }
    }
    let running = match ledger.apply(&waiting, &Event::Start).await? {
        Change::Applied(running) => running,
        Change::Declined(job, Kept::Terminal) => return ended(shared, job).await,
        Change::Declined(job, Kept::NotDue(at)) => {
            hold(&shared.queues, &shared.catalog, lane, &job, at).await?;
            return Ok(Settle::Ack);
        }
        Change::Declined(..) => return Ok(Settle::Later),
    };
    registered
        .attempt
        .started
        .store(running.version, Ordering::Release);
    metrics::QUEUE_WAIT_SECONDS
        .with_label_values(&[&running.job_type])
        .observe(
            (Utc::now() - waiting.run_at.unwrap_or(waiting.created_at))
                .to_std()
                .unwrap_or_default()
                .as_secs_f64(),
        );
    let outcome = lease
        .renewing(execute(
            shared,
            handler,
            &running,
            &registered.attempt.cancel,
        ))
        .await;
    // Still registered (and leased) while the outcome is recorded, so that no other delivery of
    // the job mistakes it for an attempt whose worker was lost.
    let finish = Event::Finish {
        attempt: running.attempts,
        outcome,
    };
    match ledger.apply(&running, &finish).await? {
        Change::Applied(recorded) => {
            follow_up(&shared.queues, &shared.catalog, lane, &recorded).await?
        }
        // The job was taken over after this worker's lease ended: the attempt that runs now (or
        // the one that ended it) speaks for the job.
        Change::Declined(job, kept) => {
            tracing::warn!(?kept, status = %job.status.as_str(), "The outcome of a lost attempt is not recorded.");
        }
    }
    registered.attempt.recorded.store(true, Ordering::Release);
    place.give_back().await;
    lease.release().await;
    drop(registered);
    Ok(Settle::Ack)
}

/// A delivery of a job that has ended: whatever failed after the outcome reached the cache last
/// time (the store write, the dead-lettering) is done again; both are idempotent for readers.
async fn ended(shared: &Shared, job: Job) -> Result<Settle, AttemptError> {
    if job.status == JobStatus::Failed {
        dead_letter(&shared.queues, &job).await?;
    }
    shared.ledger.store().write(job).await?;
    Ok(Settle::Ack)
}

/// This process's hold on running a job, cleared when dropped.
struct Registered<'a> {
    shared: &'a Shared,
    job_id: uuid::Uuid,
    attempt: Arc<Attempt>,
}

impl<'a> Registered<'a> {
    /// The attempt already running here when there is one.
    fn claim(shared: &'a Shared, job_id: uuid::Uuid) -> Result<Registered<'a>, Arc<Attempt>> {
        match shared.running.lock().unwrap().entry(job_id) {
            std::collections::hash_map::Entry::Occupied(running) => Err(running.get().clone()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let attempt = Arc::new(Attempt {
                    cancel: CancellationToken::new(),
                    ended: CancellationToken::new(),
                    recorded: AtomicBool::new(false),
                    started: AtomicU64::new(0),
                });
                slot.insert(attempt.clone());
                Ok(Registered {
                    shared,
                    job_id,
                    attempt,
                })
            }
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.shared.running.lock().unwrap().remove(&self.job_id);
        self.attempt.ended.cancel();
    }
}

/// What runs `job_type`'s jobs here: a handler of this binary's, or the delivery of a push type.
fn handler_of(shared: &Shared, job_type: &str) -> Option<Arc<dyn Handler>> {
    if let Some(handler) = shared.registry.get(job_type) {
        return Some(handler);
    }
    let catalog = shared.catalog.current();
    let info = catalog
        .get(job_type)
        .filter(|info| info.mode == JobMode::Push)?;
    let delivery = PushDelivery::of(&shared.settings.push, info)?;
    Some(Arc::new(delivery))
}

/// Counts one more job of `job_type` found at its cap here since one last got a place; returns the
/// count.
fn met_cap(shared: &Shared, job_type: &str) -> u32 {
    let mut streaks = shared.at_cap.lock().unwrap();
    let streak = streaks.entry(job_type.to_owned()).or_default();
    *streak = streak.saturating_add(1);
    *streak
}

/// How long a job of a type at its `concurrency` cap waits on its queue before it is delivered
/// again, the `streak`th in a row to find the type full here: a second or two at first, longer the
/// deeper the type's backlog behind its cap (doubling every [`AT_CAP_DOUBLING`] jobs, at most
/// [`AT_CAP_MAX_WAIT`]), so that the jobs waiting for places cost a republish each per wait rather
/// than every second; spread out so they do not all come back at once.
fn at_cap_wait(streak: u32) -> chrono::Duration {
    let doublings = (streak.saturating_sub(1) / AT_CAP_DOUBLING).min(16);
    let wait = (AT_CAP_WAIT * 2u32.pow(doublings)).min(AT_CAP_MAX_WAIT);
    let millis = wait.as_millis() as i64;
    chrono::Duration::milliseconds(millis + rand::random_range(0..millis))
}

/// A place among its type's running attempts, for a type with a `concurrency` cap (none needed
/// otherwise); given back once the outcome is recorded, or on any other way out, when dropped.
struct Place {
    ledger: conveyor_store::Ledger,
    /// The type and the job whose place it is, until given back.
    held: Option<(String, uuid::Uuid)>,
}

impl Place {
    /// `None` when the type is at its cap.
    async fn take(shared: &Shared, job: &Job) -> Result<Option<Place>, StoreError> {
        let ledger = shared.ledger.clone();
        let cap = shared
            .catalog
            .current()
            .get(&job.job_type)
            .and_then(|info| info.concurrency);
        let Some(cap) = cap else {
            return Ok(Some(Place { ledger, held: None }));
        };
        let taken = take_running_place(&**ledger.cache(), job, cap).await?;
        if taken {
            shared.at_cap.lock().unwrap().remove(&job.job_type);
        }
        Ok(taken.then(|| Place {
            ledger,
            held: Some((job.job_type.clone(), job.id)),
        }))
    }

    async fn give_back(mut self) {
        if let Some(held) = self.held.take() {
            give_back(&self.ledger, held).await;
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(held) = self.held.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let ledger = self.ledger.clone();
            runtime.spawn(async move { give_back(&ledger, held).await });
        }
    }
}

/// A place that cannot be given back now is taken back by the next worker that finds the type at
/// its cap, once this job's lease has run out.
async fn give_back(ledger: &conveyor_store::Ledger, (job_type, job_id): (String, uuid::Uuid)) {
    if let Err(error) = give_back_running_place(&**ledger.cache(), &job_type, job_id).await {
        tracing::warn!(%job_id, %error, "Could not give back a place of the type's concurrency.");
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
                    // worker took the job over: its attempt is fenced from ours, so whichever
                    // records first, the outcome is one.
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
    let retry_after = |error, delay| Outcome::Failed {
        error,
        retry_at: Some(Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default()),
    };
    match result {
        Ok(value) => Outcome::Succeeded(value),
        Err(_) if cancel.is_cancelled() => Outcome::Cancelled,
        Err(JobError::Retryable(error)) => {
            let backoff = shared
                .catalog
                .current()
                .get(&running.job_type)
                .and_then(|info| info.backoff)
                .map_or(shared.settings.backoff, |spec| spec.backoff());
            retry_after(error, backoff.delay(running.attempts))
        }
        Err(JobError::RetryAfter(error, delay)) => retry_after(error, delay),
        Err(JobError::Permanent(error)) => Outcome::Failed {
            error,
            retry_at: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_during_an_attempt_is_done_with_only_if_it_is_a_copy_of_the_recorded_one() {
        // The command that started the attempt (version 1; running at 2), delivered again.
        assert_eq!(settle_after(true, 2, 1), AfterAttempt::Done);
        // The next attempt's command, sent when the attempt was recorded (version 3).
        assert_eq!(settle_after(true, 2, 3), AfterAttempt::Again);
        // The attempt was not recorded: the job is not done with.
        assert_eq!(settle_after(false, 2, 1), AfterAttempt::Again);
    }

    #[test]
    fn jobs_at_their_types_cap_wait_longer_the_longer_the_streak() {
        let within = |streak, low: i64, high: i64| {
            let wait = at_cap_wait(streak).num_milliseconds();
            assert!((low..high).contains(&wait), "streak {streak}: {wait} ms");
        };
        within(1, 1_000, 2_000);
        within(AT_CAP_DOUBLING, 1_000, 2_000);
        within(AT_CAP_DOUBLING + 1, 2_000, 4_000);
        within(10 * AT_CAP_DOUBLING, 30_000, 60_000);
        within(u32::MAX, 30_000, 60_000);
    }
}
