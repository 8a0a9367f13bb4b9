//! Waiters on one job each (long-polls, event streams), woken by changes of their own job only.
//!
//! One task per process reads the change feed and hands each snapshot to the waiters of that job,
//! so an idle waiter costs nothing when other jobs change: with every waiter on the feed itself,
//! each change woke all of them, and 3,000 long-polls on a quiet job cut the submit rate by four
//! fifths.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use conveyor_schemas::Job;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Snapshots of one job a waiter may fall behind by before it must read the job again.
const PER_JOB_BACKLOG: usize = 16;

/// What a waiter hears about its job.
#[derive(Clone, Debug)]
pub enum Heard {
    /// A snapshot kept from now on, in order.
    Snapshot(Arc<Job>),
    /// Changes may have gone by unheard (the feed or this waiter fell behind): read the job.
    Missed,
}

type Waiting = Mutex<HashMap<Uuid, broadcast::Sender<Heard>>>;

/// The waiters of this process, by job.
pub(crate) struct Watchers {
    waiting: Arc<Waiting>,
    /// Started with the first waiter, so that a process nobody waits in reads no feed for them.
    dispatching: OnceLock<()>,
}

impl Watchers {
    pub(crate) fn new() -> Watchers {
        Watchers {
            waiting: Arc::default(),
            dispatching: OnceLock::new(),
        }
    }

    /// A waiter on job `id`, hearing every change kept from now on. `feed` subscribes to the
    /// change feed; it is called once, by the first waiter.
    pub(crate) fn watch(
        &self,
        id: Uuid,
        feed: impl FnOnce() -> broadcast::Receiver<Arc<Job>>,
    ) -> JobWatch {
        self.dispatching.get_or_init(|| {
            tokio::spawn(dispatch(feed(), Arc::downgrade(&self.waiting)));
        });
        let mut waiting = self.waiting.lock().expect("no panic holds the lock");
        let heard = waiting
            .entry(id)
            .or_insert_with(|| broadcast::channel(PER_JOB_BACKLOG).0)
            .subscribe();
        JobWatch {
            id,
            heard,
            waiting: self.waiting.clone(),
        }
    }

    /// Jobs with at least one waiter here.
    pub(crate) fn watched(&self) -> usize {
        self.waiting.lock().expect("no panic holds the lock").len()
    }
}

/// Hands every change on `feed` to its job's waiters, until the feed or the waiters are gone.
async fn dispatch(mut feed: broadcast::Receiver<Arc<Job>>, waiting: Weak<Waiting>) {
    loop {
        let change = feed.recv().await;
        let Some(waiting) = waiting.upgrade() else {
            return;
        };
        let mut waiting = waiting.lock().expect("no panic holds the lock");
        match change {
            Ok(job) => {
                if let Some(waiters) = waiting.get(&job.id) {
                    // No receiver left is no error: the last one is being dropped.
                    let _ = waiters.send(Heard::Snapshot(job));
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                for waiters in waiting.values() {
                    let _ = waiters.send(Heard::Missed);
                }
            }
            // Dropping the senders tells every waiter that nothing more will come.
            Err(broadcast::error::RecvError::Closed) => {
                waiting.clear();
                return;
            }
        }
    }
}

/// One waiter on one job; dropping it (its client went, or it ended) forgets it.
pub struct JobWatch {
    id: Uuid,
    heard: broadcast::Receiver<Heard>,
    waiting: Arc<Waiting>,
}

impl JobWatch {
    /// The job waited on.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The next thing heard about the job; `None` once the change feed has closed.
    pub async fn next(&mut self) -> Option<Heard> {
        match self.heard.recv().await {
            Ok(heard) => Some(heard),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Heard::Missed),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for JobWatch {
    fn drop(&mut self) {
        let mut waiting = self.waiting.lock().expect("no panic holds the lock");
        // Waiters are only made under the lock, so the count cannot grow meanwhile; this one is
        // still counted, its receiver being dropped after this.
        if waiting
            .get(&self.id)
            .is_some_and(|waiters| waiters.receiver_count() <= 1)
        {
            waiting.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conveyor_schemas::JobStatus;

    fn job(version: u64) -> Arc<Job> {
        Arc::new(Job {
            version,
            ..Job::fixture()
        })
    }

    #[tokio::test]
    async fn a_waiter_hears_its_own_job_only_and_is_forgotten_when_dropped() {
        let (feed, _) = broadcast::channel(8);
        let watchers = Watchers::new();
        let mine = job(1);
        let other = job(1);
        let mut watch = watchers.watch(mine.id, || feed.subscribe());
        assert_eq!(watchers.watched(), 1);
        feed.send(other).unwrap();
        let mut newer = (*mine).clone();
        newer.version = 2;
        newer.status = JobStatus::Running;
        feed.send(Arc::new(newer)).unwrap();
        match watch.next().await {
            Some(Heard::Snapshot(heard)) => {
                assert_eq!((heard.id, heard.version), (mine.id, 2));
            }
            heard => panic!("expected the job's snapshot, heard {heard:?}"),
        }
        let second = watchers.watch(mine.id, || unreachable!("the feed is read already"));
        drop(watch);
        assert_eq!(watchers.watched(), 1, "another waiter is left");
        drop(second);
        assert_eq!(watchers.watched(), 0);
    }

    #[tokio::test]
    async fn a_feed_that_fell_behind_tells_every_waiter_to_read_again() {
        let (feed, _) = broadcast::channel(1);
        let watchers = Watchers::new();
        let mut watch = watchers.watch(job(1).id, || feed.subscribe());
        // Over the feed's capacity before the dispatcher reads: it lags.
        for version in 1..=3 {
            feed.send(job(version)).unwrap();
        }
        assert!(matches!(watch.next().await, Some(Heard::Missed)));
    }

    #[tokio::test]
    async fn waiters_hear_the_end_of_the_feed() {
        let (feed, _) = broadcast::channel::<Arc<Job>>(1);
        let watchers = Watchers::new();
        let mut watch = watchers.watch(job(1).id, || feed.subscribe());
        drop(feed);
        assert!(watch.next().await.is_none());
    }
}
