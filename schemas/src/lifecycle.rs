//! The job state machine: every change a job can go through, decided in one place.
//!
//! [`decide`] is a pure function from a job as it is and an [`Event`] to a [`Decision`]: the job
//! as it should be after the event, or why the event does not apply. The ledger, the workers and
//! the API only apply its decisions; none of them changes a job's status on its own.
//!
//! ```text
//!  queued ───────────────────▶ running ──▶ succeeded
//!  scheduled ──(at run_at)──▶    │  ▲ └───▶ failed      (permanent error, or no attempts left)
//!      │          │              ▼  │
//!      │          │          retrying (run_at = next attempt; also when its worker was lost)
//!      └──────────┴──────────────┴──────▶ cancelled
//! ```
//!
//! Attempts are fenced by their number: an event about an attempt (progress, its outcome) applies
//! only while the job is `running` that very attempt, so a worker that lost its job (its lease
//! ended, the job was rescued and started again elsewhere) can record nothing.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{Job, JobStatus};

/// Something that happens to a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A worker holding the job's lease starts an attempt.
    Start,
    /// The handler of `attempt` reports the fraction done.
    Progress { attempt: u32, fraction: f64 },
    /// `attempt` ended.
    Finish { attempt: u32, outcome: Outcome },
    /// The client asks to cancel.
    Cancel,
    /// The lease on running `attempt` ended without an outcome: its worker was lost.
    Rescue { attempt: u32 },
    /// The store refuses to hold the job (a value the database cannot keep): it can never be
    /// recorded, so it fails.
    Unstorable,
    /// An operator removed the job's type while the job was unfinished: nothing can run it.
    TypeRemoved,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Value),
    /// The handler stopped because the client asked it to.
    Cancelled,
    /// The handler failed; `retry_at` is when the next attempt would run, for an error worth
    /// retrying (`None`: permanent).
    Failed {
        error: String,
        retry_at: Option<DateTime<Utc>>,
    },
}

/// What [`decide`] says.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The job as it is to be after the event (the ledger stamps its new version).
    Apply(Box<Job>),
    /// The event does not change the job.
    Keep(Kept),
}

/// Why an event leaves a job as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// The job has ended; nothing changes it again.
    Terminal,
    /// Not due until then: the job waits.
    NotDue(DateTime<Utc>),
    /// An attempt is running: it is its worker's to finish (or the rescuer's, once its lease
    /// ends).
    Running,
    /// The event is about an attempt that is not the one running now (or none is).
    StaleAttempt,
    /// Its cancellation was asked for already.
    CancelRequested,
    /// The job is not running: there is nothing to rescue.
    NotRunning,
}

/// The status of a job accepted now with `run_at`: it waits as `scheduled` until a time ahead.
pub fn accepted_status(run_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> JobStatus {
    if run_at.is_some_and(|at| at > now) {
        JobStatus::Scheduled
    } else {
        JobStatus::Queued
    }
}

/// The error of a job the store refused to hold.
pub const UNSTORABLE: &str = "the job store refused to hold this job (the database cannot keep a value in it); it was dead-lettered";

/// The error of a job whose type an operator removed before it finished.
pub fn type_removed(job_type: &str) -> String {
    format!("job type `{job_type}` was removed by an operator before this job finished")
}

/// The error a job shows once its worker was lost during `attempt`.
fn lost(attempt: u32) -> String {
    format!("the worker running attempt {attempt} was lost")
}

/// The job after `event`, or why it stays as it is; `now` stamps what it changes.
pub fn decide(job: &Job, event: &Event, now: DateTime<Utc>) -> Decision {
    use Decision::{Apply, Keep};
    if job.status.is_terminal() {
        return Keep(Kept::Terminal);
    }
    let mut next = job.clone();
    match event {
        Event::Start => {
            if job.status == JobStatus::Running {
                return Keep(Kept::Running);
            }
            if let Some(at) = job.run_at.filter(|at| *at > now) {
                return Keep(Kept::NotDue(at));
            }
            next.status = JobStatus::Running;
            next.attempts += 1;
            next.started_at = Some(now);
            next.progress = None;
            next.run_at = None;
        }
        Event::Progress { attempt, fraction } => {
            if !running_attempt(job, *attempt) {
                return Keep(Kept::StaleAttempt);
            }
            next.progress = Some(fraction.clamp(0.0, 1.0));
        }
        Event::Finish { attempt, outcome } => {
            if !running_attempt(job, *attempt) {
                return Keep(Kept::StaleAttempt);
            }
            match outcome {
                Outcome::Succeeded(result) => {
                    next.status = JobStatus::Succeeded;
                    next.result = Some(result.clone());
                    next.error = None;
                    next.progress = Some(1.0);
                }
                // A cancel asked for during the attempt wins over anything but success.
                Outcome::Cancelled | Outcome::Failed { .. } if job.cancel_requested => {
                    cancel(&mut next)
                }
                Outcome::Cancelled => cancel(&mut next),
                Outcome::Failed { error, retry_at } => {
                    next.error = Some(error.clone());
                    match retry_at.filter(|_| job.attempts < job.max_attempts) {
                        Some(at) => {
                            next.status = JobStatus::Retrying;
                            next.run_at = Some(at);
                        }
                        None => next.status = JobStatus::Failed,
                    }
                }
            }
        }
        Event::Cancel => {
            if job.status.is_waiting() {
                cancel(&mut next);
            } else if job.cancel_requested {
                return Keep(Kept::CancelRequested);
            } else {
                next.cancel_requested = true;
            }
        }
        Event::Rescue { attempt } => {
            if job.status != JobStatus::Running {
                return Keep(Kept::NotRunning);
            }
            if job.attempts != *attempt {
                return Keep(Kept::StaleAttempt);
            }
            if job.cancel_requested {
                // Its worker died after the client asked to cancel: nothing is left to stop.
                cancel(&mut next);
            } else if job.attempts >= job.max_attempts {
                next.status = JobStatus::Failed;
                next.error = Some(format!("{}, and no attempts remain", lost(job.attempts)));
            } else {
                // The lost attempt counts; the next one may run at once.
                next.status = JobStatus::Retrying;
                next.error = Some(lost(job.attempts));
                next.run_at = Some(now);
            }
        }
        Event::Unstorable => fail(&mut next, UNSTORABLE.into()),
        Event::TypeRemoved => fail(&mut next, type_removed(&job.job_type)),
    }
    if next.status.is_terminal() {
        next.finished_at = Some(now);
    }
    Apply(Box::new(next))
}

/// Whether `job` is running `attempt` now: the one attempt whose worker may report on it.
pub fn running_attempt(job: &Job, attempt: u32) -> bool {
    job.status == JobStatus::Running && job.attempts == attempt
}

fn fail(job: &mut Job, error: String) {
    job.status = JobStatus::Failed;
    job.error = Some(error);
}

fn cancel(job: &mut Job) {
    job.status = JobStatus::Cancelled;
    job.error = Some("cancelled at the client's request".into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: JobStatus) -> Job {
        Job {
            status,
            attempts: u32::from(status == JobStatus::Running),
            ..Job::fixture()
        }
    }

    fn applied(decision: Decision) -> Job {
        match decision {
            Decision::Apply(job) => *job,
            Decision::Keep(kept) => panic!("expected a change, got {kept:?}"),
        }
    }

    fn failed(retry_at: Option<DateTime<Utc>>) -> Outcome {
        Outcome::Failed {
            error: "boom".into(),
            retry_at,
        }
    }

    const TERMINAL: [JobStatus; 3] = [
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    #[test]
    fn nothing_changes_a_job_that_has_ended() {
        let events = [
            Event::Start,
            Event::Progress {
                attempt: 1,
                fraction: 0.5,
            },
            Event::Finish {
                attempt: 1,
                outcome: Outcome::Succeeded(json!(1)),
            },
            Event::Cancel,
            Event::Rescue { attempt: 1 },
            Event::Unstorable,
            Event::TypeRemoved,
        ];
        for status in TERMINAL {
            for event in &events {
                assert_eq!(
                    decide(&job(status), event, Utc::now()),
                    Decision::Keep(Kept::Terminal),
                    "{status:?} after {event:?}"
                );
            }
        }
    }

    #[test]
    fn a_due_waiting_job_starts_its_next_attempt() {
        let now = Utc::now();
        for status in [JobStatus::Queued, JobStatus::Scheduled, JobStatus::Retrying] {
            let mut waiting = job(status);
            waiting.attempts = 1;
            waiting.run_at = Some(now);
            let running = applied(decide(&waiting, &Event::Start, now));
            assert_eq!(running.status, JobStatus::Running);
            assert_eq!(running.attempts, 2);
            assert_eq!(running.started_at, Some(now));
            assert_eq!(running.run_at, None);
        }
    }

    #[test]
    fn a_job_does_not_start_before_its_time_nor_twice() {
        let now = Utc::now();
        let mut scheduled = job(JobStatus::Scheduled);
        let later = now + chrono::Duration::seconds(5);
        scheduled.run_at = Some(later);
        assert_eq!(
            decide(&scheduled, &Event::Start, now),
            Decision::Keep(Kept::NotDue(later))
        );
        assert_eq!(
            decide(&job(JobStatus::Running), &Event::Start, now),
            Decision::Keep(Kept::Running)
        );
    }

    #[test]
    fn only_the_running_attempt_records_progress_and_outcomes() {
        let running = job(JobStatus::Running);
        let stale = [
            Event::Progress {
                attempt: 2,
                fraction: 0.5,
            },
            Event::Finish {
                attempt: 2,
                outcome: Outcome::Succeeded(json!(1)),
            },
        ];
        for event in &stale {
            assert_eq!(
                decide(&running, event, Utc::now()),
                Decision::Keep(Kept::StaleAttempt)
            );
        }
        let mut rescued = job(JobStatus::Retrying);
        rescued.attempts = 1;
        let late = Event::Finish {
            attempt: 1,
            outcome: Outcome::Succeeded(json!(1)),
        };
        assert_eq!(
            decide(&rescued, &late, Utc::now()),
            Decision::Keep(Kept::StaleAttempt),
            "a lost worker's outcome must not land on a rescued job"
        );
        let progressed = applied(decide(
            &running,
            &Event::Progress {
                attempt: 1,
                fraction: 7.0,
            },
            Utc::now(),
        ));
        assert_eq!(progressed.progress, Some(1.0));
        assert_eq!(progressed.status, JobStatus::Running);
    }

    #[test]
    fn success_is_final_and_keeps_the_result() {
        let now = Utc::now();
        let done = applied(decide(
            &job(JobStatus::Running),
            &Event::Finish {
                attempt: 1,
                outcome: Outcome::Succeeded(json!({"ok": true})),
            },
            now,
        ));
        assert_eq!(done.status, JobStatus::Succeeded);
        assert_eq!(done.result, Some(json!({"ok": true})));
        assert_eq!(done.finished_at, Some(now));
    }

    #[test]
    fn a_retryable_failure_retries_while_attempts_remain() {
        let now = Utc::now();
        let at = now + chrono::Duration::seconds(1);
        let mut running = job(JobStatus::Running);
        let finish = |attempt| Event::Finish {
            attempt,
            outcome: failed(Some(at)),
        };
        let retrying = applied(decide(&running, &finish(1), now));
        assert_eq!(retrying.status, JobStatus::Retrying);
        assert_eq!(retrying.run_at, Some(at));
        assert_eq!(retrying.error.as_deref(), Some("boom"));
        assert_eq!(retrying.finished_at, None);

        running.attempts = 3;
        let failed_for_good = applied(decide(&running, &finish(3), now));
        assert_eq!(failed_for_good.status, JobStatus::Failed);
        assert_eq!(failed_for_good.finished_at, Some(now));
    }

    #[test]
    fn a_permanent_failure_fails_at_once() {
        let failed_job = applied(decide(
            &job(JobStatus::Running),
            &Event::Finish {
                attempt: 1,
                outcome: failed(None),
            },
            Utc::now(),
        ));
        assert_eq!(failed_job.status, JobStatus::Failed);
    }

    #[test]
    fn a_cancel_asked_for_during_an_attempt_wins_over_failure_not_success() {
        let mut running = job(JobStatus::Running);
        running.cancel_requested = true;
        let at = Some(Utc::now());
        let after = |outcome| {
            applied(decide(
                &running,
                &Event::Finish {
                    attempt: 1,
                    outcome,
                },
                Utc::now(),
            ))
            .status
        };
        assert_eq!(after(failed(at)), JobStatus::Cancelled);
        assert_eq!(after(Outcome::Cancelled), JobStatus::Cancelled);
        assert_eq!(after(Outcome::Succeeded(json!(1))), JobStatus::Succeeded);
    }

    #[test]
    fn cancelling_ends_a_waiting_job_and_asks_a_running_one() {
        for status in [JobStatus::Queued, JobStatus::Scheduled, JobStatus::Retrying] {
            let cancelled = applied(decide(&job(status), &Event::Cancel, Utc::now()));
            assert_eq!(cancelled.status, JobStatus::Cancelled);
            assert!(cancelled.finished_at.is_some());
        }
        let asked = applied(decide(&job(JobStatus::Running), &Event::Cancel, Utc::now()));
        assert_eq!(asked.status, JobStatus::Running);
        assert!(asked.cancel_requested);
        assert_eq!(
            decide(&asked, &Event::Cancel, Utc::now()),
            Decision::Keep(Kept::CancelRequested)
        );
    }

    #[test]
    fn a_rescued_job_runs_again_counting_the_lost_attempt() {
        let now = Utc::now();
        let rescued = applied(decide(
            &job(JobStatus::Running),
            &Event::Rescue { attempt: 1 },
            now,
        ));
        assert_eq!(rescued.status, JobStatus::Retrying);
        assert_eq!(rescued.attempts, 1);
        assert_eq!(rescued.run_at, Some(now));
        assert_eq!(
            applied(decide(&rescued, &Event::Start, now)).attempts,
            2,
            "the next attempt is the second"
        );
    }

    #[test]
    fn a_rescued_job_without_attempts_left_fails_and_a_cancelled_one_ends() {
        let mut last = job(JobStatus::Running);
        last.attempts = 3;
        let failed_job = applied(decide(&last, &Event::Rescue { attempt: 3 }, Utc::now()));
        assert_eq!(failed_job.status, JobStatus::Failed);
        assert!(failed_job.error.unwrap().contains("no attempts remain"));

        let mut asked = job(JobStatus::Running);
        asked.cancel_requested = true;
        assert_eq!(
            applied(decide(&asked, &Event::Rescue { attempt: 1 }, Utc::now())).status,
            JobStatus::Cancelled
        );
        assert_eq!(
            decide(
                &job(JobStatus::Queued),
                &Event::Rescue { attempt: 0 },
                Utc::now()
            ),
            Decision::Keep(Kept::NotRunning)
        );
        assert_eq!(
            decide(
                &job(JobStatus::Running),
                &Event::Rescue { attempt: 2 },
                Utc::now()
            ),
            Decision::Keep(Kept::StaleAttempt),
            "an attempt that is not the one running is not rescued"
        );
    }

    #[test]
    fn a_job_the_store_refuses_fails_whatever_it_was_doing() {
        for status in [JobStatus::Queued, JobStatus::Scheduled, JobStatus::Running] {
            let failed = applied(decide(&job(status), &Event::Unstorable, Utc::now()));
            assert_eq!(failed.status, JobStatus::Failed);
            assert_eq!(failed.error.as_deref(), Some(UNSTORABLE));
            assert!(failed.finished_at.is_some());
        }
    }

    #[test]
    fn a_job_whose_type_was_removed_fails_naming_the_type() {
        for status in [JobStatus::Queued, JobStatus::Retrying, JobStatus::Running] {
            let failed = applied(decide(&job(status), &Event::TypeRemoved, Utc::now()));
            assert_eq!(failed.status, JobStatus::Failed);
            assert_eq!(failed.error, Some(type_removed("echo")));
            assert!(failed.finished_at.is_some());
        }
    }

    #[test]
    fn accepted_jobs_wait_as_scheduled_only_for_a_time_ahead() {
        let now = Utc::now();
        let ahead = now + chrono::Duration::seconds(1);
        assert_eq!(accepted_status(None, now), JobStatus::Queued);
        assert_eq!(accepted_status(Some(now), now), JobStatus::Queued);
        assert_eq!(accepted_status(Some(ahead), now), JobStatus::Scheduled);
    }
}
