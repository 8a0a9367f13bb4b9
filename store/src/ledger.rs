use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use conveyor_schemas::Job;
use conveyor_schemas::lifecycle::{self, Decision, Event, Kept};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::watchers::{Heard, JobWatch, Watchers};
use crate::{Cache, JobStore, StoreError};

/// How often an update re-reads and retries when another writer changed the job first.
const MAX_RACES: usize = 16;
/// Jobs changed while the cache was down that a process remembers, to bring their snapshots up
/// to date once it is back; beyond that, the rest catch up with their next change.
const MAX_CHANGED_WITHOUT_CACHE: usize = 100_000;

/// The outcome of [`Ledger::apply`].
#[derive(Debug, Clone)]
pub enum Change {
    /// The change was made; this is the new snapshot.
    Applied(Job),
    /// The event does not apply to the job as it is (for the reason given); this is how it is.
    Declined(Job, Kept),
}

/// Applies job changes to the cache (the compare-and-set point and change feed) and the store (the
/// durable record), so that api and workers change jobs one way only.
///
/// When the cache fails (Redis down), the ledger carries on with the store alone: reads come from
/// the database and changes are written to it directly, so losing the cache loses no job; what is
/// lost meanwhile is the cache's compare-and-set between writers and its change feed (long-poll
/// and SSE wait until their timeout). Once the cache is back, each process puts the snapshots of
/// the jobs it changed meanwhile there, read from the primary database (the cache keeps a snapshot
/// only over an older one): the rest of the cache was never wrong, and stays.
#[derive(Clone)]
pub struct Ledger {
    cache: Arc<dyn Cache>,
    store: JobStore,
    cache_down: Arc<AtomicBool>,
    changed_without_cache: Arc<Mutex<HashSet<Uuid>>>,
    watchers: Arc<Watchers>,
}

impl Ledger {
    pub fn new(cache: Arc<dyn Cache>, store: JobStore) -> Ledger {
        Ledger {
            cache,
            store,
            cache_down: Arc::default(),
            changed_without_cache: Arc::default(),
            watchers: Arc::new(Watchers::new()),
        }
    }

    /// Passes a cache answer through, noting (once per outage) when the cache fails and when it
    /// is back; a failure comes back as `None`.
    fn cache_answer<T>(&self, answer: Result<T, StoreError>) -> Option<T> {
        match answer {
            Ok(value) => {
                if self.cache_down.swap(false, Ordering::Relaxed) {
                    let changed = std::mem::take(&mut *self.changed_without_cache.lock().unwrap());
                    tracing::info!(
                        jobs = changed.len(),
                        "The cache answers again; bringing the jobs changed meanwhile up to date in it."
                    );
                    tokio::spawn(self.clone().recache(changed));
                }
                Some(value)
            }
            Err(error) => {
                if !self.cache_down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "The cache failed; reading and writing jobs through the database until it is back.");
                }
                None
            }
        }
    }

    /// Puts the newest snapshots of `changed` (jobs changed here while the cache was down) in the
    /// cache.
    async fn recache(self, changed: HashSet<Uuid>) {
        let mut missed = 0;
        for id in changed {
            let newest = match self.store.get_newest(id).await {
                Ok(Some(job)) => job,
                Ok(None) => continue,
                Err(_) => {
                    missed += 1;
                    continue;
                }
            };
            if self.cache.put_job(&newest).await.is_err() {
                missed += 1;
            }
        }
        if missed > 0 {
            tracing::warn!(
                missed,
                "Some jobs changed while the cache was down could not be brought up to date in it; their next change will."
            );
        }
    }

    /// Notes a change that reached the store alone.
    fn changed_without_cache(&self, id: Uuid) {
        let mut changed = self.changed_without_cache.lock().unwrap();
        if changed.len() < MAX_CHANGED_WITHOUT_CACHE {
            changed.insert(id);
        }
    }

    pub fn cache(&self) -> &Arc<dyn Cache> {
        &self.cache
    }

    pub fn store(&self) -> &JobStore {
        &self.store
    }

    /// The job as it is: from the cache, else from the store. What the store says is cached only
    /// once the job has ended: read from a replica, an unfinished job may be behind, and cached
    /// it would pass for the newest until its next change.
    pub async fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        if let Some(Some(job)) = self.cache_answer(self.cache.get_job(id).await) {
            return Ok(Some(job));
        }
        let Some(job) = self.store.get(id).await? else {
            return Ok(None);
        };
        if job.status.is_terminal() {
            self.cache_answer(self.cache.put_job(&job).await);
        }
        Ok(Some(job))
    }

    /// The newest snapshot known here: the cache's (else the store's), unless `held` (a snapshot
    /// the caller holds, e.g. from a command) is newer, as when the cache forgot the job and the
    /// store has not caught up with its latest writes yet.
    pub async fn current(&self, held: &Job) -> Result<Job, StoreError> {
        Ok(match self.get(held.id).await? {
            Some(found) if found.status.is_terminal() || found.version >= held.version => found,
            _ => held.clone(),
        })
    }

    /// A job the broker has accepted: visible at once, before any worker has seen it.
    pub async fn accepted(&self, job: &Job) -> Result<(), StoreError> {
        if self.cache_answer(self.cache.put_job(job).await).is_none() {
            self.changed_without_cache(job.id);
            self.store.write(job.clone()).await?;
        }
        Ok(())
    }

    /// A job as a command carries it, committed to the store so that it can be listed and looked
    /// up even with a cold cache. Idempotent: the store keeps the newest snapshot. The cache is
    /// left alone: the API put the job there, and a cold cache must not take this (possibly old)
    /// snapshot for the newest.
    pub async fn record(&self, job: &Job) -> Result<(), StoreError> {
        self.store.write(job.clone()).await
    }

    /// Applies `event` to the job as the state machine ([`lifecycle::decide`]) decides, on the
    /// newest snapshot: retries when another writer got there first. `fallback` stands in for the
    /// job where it is newer than what the cache and store know (see [`Ledger::current`]).
    /// Terminal snapshots are committed to the store before this returns.
    pub async fn apply(&self, fallback: &Job, event: &Event) -> Result<Change, StoreError> {
        self.apply_to(fallback, event, true).await
    }

    /// Fails a job that the store refused to hold ([`StoreError::Refused`]), in the cache alone:
    /// its readers see why, until the cache forgets it.
    pub async fn unstorable(&self, job: &Job) -> Result<Change, StoreError> {
        self.apply_to(job, &Event::Unstorable, false).await
    }

    async fn apply_to(
        &self,
        fallback: &Job,
        event: &Event,
        to_store: bool,
    ) -> Result<Change, StoreError> {
        for _ in 0..MAX_RACES {
            let current = self.current(fallback).await?;
            let changed = match lifecycle::decide(&current, event, Utc::now()) {
                Decision::Apply(changed) => *changed,
                Decision::Keep(kept) => return Ok(Change::Declined(current, kept)),
            };
            let next = current.next();
            let next = Job {
                version: next.version,
                updated_at: next.updated_at,
                ..changed
            };
            match self.cache_answer(self.cache.put_job(&next).await) {
                Some(false) => continue,
                Some(true) => {}
                // Without the cache, the store's guard (newest version wins, terminal is final)
                // is the only order; the write is awaited so a reader sees it at once.
                None if to_store => {
                    self.changed_without_cache(next.id);
                    self.store.write(next.clone()).await?;
                    return Ok(Change::Applied(next));
                }
                None => return Err(StoreError::Cache("the cache is down".into())),
            }
            if to_store && next.status.is_terminal() {
                self.store.write(next.clone()).await?;
            } else if to_store {
                self.store.write_soon(next.clone()).await?;
            }
            return Ok(Change::Applied(next));
        }
        Err(StoreError::Contended(fallback.id))
    }

    /// Takes or renews `holder`'s lease on running `job` (see [`Cache::hold_lease`]). Without the
    /// cache there is no lease to respect: every holder gets one, as before leases.
    pub async fn hold_lease(&self, job: Uuid, holder: Uuid, ttl: Duration) -> bool {
        self.cache_answer(self.cache.hold_lease(job, holder, ttl).await)
            .unwrap_or(true)
    }

    /// Ends `holder`'s lease on `job`; without the cache it ends by itself.
    pub async fn release_lease(&self, job: Uuid, holder: Uuid) {
        self.cache_answer(self.cache.release_lease(job, holder).await);
    }

    /// Every change kept from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Job>> {
        self.cache.subscribe()
    }

    /// A waiter on job `id`, hearing of its changes kept from now on: made before the caller
    /// reads the job, so that a change between the read and the wait is not missed.
    pub fn watch(&self, id: Uuid) -> JobWatch {
        self.watchers.watch(id, || self.cache.subscribe())
    }

    /// Jobs someone waits on in this process.
    pub fn watched(&self) -> usize {
        self.watchers.watched()
    }

    /// Waits on `watch` for a snapshot of its job newer than `version`. Changes that went by
    /// unheard are caught up with by reading the job as it is. `None` once the feed has closed.
    pub async fn next_change(
        &self,
        watch: &mut JobWatch,
        version: u64,
    ) -> Result<Option<Job>, StoreError> {
        loop {
            match watch.next().await {
                Some(Heard::Snapshot(job)) if job.version > version => {
                    return Ok(Some((*job).clone()));
                }
                Some(Heard::Snapshot(_)) => {}
                Some(Heard::Missed) => {
                    if let Some(job) = self.get(watch.id()).await?
                        && job.version > version
                    {
                        return Ok(Some(job));
                    }
                }
                None => return Ok(None),
            }
        }
    }
}
