//! Group commit: many writers, one transaction. Each caller hands over one item; a single task
//! takes whatever has queued up (up to a batch size), commits it at once and tells every caller.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::StoreError;

const FLUSH_TRIES: u32 = 5;

/// The values of a committed batch that the database refused (by index in the batch, with its
/// reason): the rest of the batch is committed.
pub(crate) type Refusals = Vec<(usize, String)>;

/// A value to commit (with or without someone waiting for it), or a waiter alone: a flush, told
/// once everything handed over before it is committed.
struct Item<T> {
    value: Option<T>,
    done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

pub(crate) struct Batcher<T> {
    tx: mpsc::Sender<Item<T>>,
}

impl<T> Clone for Batcher<T> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> Batcher<T> {
    pub(crate) fn spawn<F, Fut>(name: &'static str, max_batch: usize, flush: F) -> Batcher<T>
    where
        F: Fn(Arc<Vec<T>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Refusals, StoreError>> + Send,
    {
        // The bounded channel is the backpressure: writers wait when the database falls behind.
        let (tx, mut rx) = mpsc::channel::<Item<T>>(max_batch * 4);
        tokio::spawn(async move {
            let mut items = Vec::with_capacity(max_batch);
            // Values nobody waited for that a failed commit lost since the last flush: a flush
            // must not report everything committed when they were not.
            let mut lost = 0;
            while rx.recv_many(&mut items, max_batch).await > 0 {
                let mut values = Vec::with_capacity(items.len());
                let mut waiters = Vec::with_capacity(items.len());
                let mut flushes = Vec::new();
                let mut unwaited = 0;
                for item in items.drain(..) {
                    match (item.value, item.done) {
                        (Some(value), done) => {
                            unwaited += usize::from(done.is_none());
                            waiters.extend(done.map(|done| (values.len(), done)));
                            values.push(value);
                        }
                        (None, Some(flush)) => flushes.push(flush),
                        (None, None) => {}
                    }
                }
                let result = if values.is_empty() {
                    Ok(Refusals::new())
                } else {
                    flush_with_retries(name, &flush, Arc::new(values)).await
                };
                let mut refusals: HashMap<usize, String> = match &result {
                    Ok(refusals) => refusals.iter().cloned().collect(),
                    Err(_) => HashMap::new(),
                };
                if result.is_err() {
                    lost += unwaited;
                }
                for (index, waiter) in waiters {
                    let told = match (&result, refusals.remove(&index)) {
                        (Err(error), _) => Err(error.clone()),
                        (Ok(_), Some(reason)) => Err(StoreError::Refused(reason)),
                        (Ok(_), None) => Ok(()),
                    };
                    let _ = waiter.send(told);
                }
                // What is left was refused with nobody waiting for it.
                lost += refusals.len();
                let result = result.map(|_| ());
                if !flushes.is_empty() {
                    let flushed = match lost {
                        0 => result.clone(),
                        lost => Err(StoreError::Database(format!(
                            "{lost} writes to {name} were lost to failed commits"
                        ))),
                    };
                    for waiter in flushes {
                        let _ = waiter.send(flushed.clone());
                    }
                    lost = 0;
                }
            }
        });
        Batcher { tx }
    }

    /// Hands `value` over and waits until it is committed.
    pub(crate) async fn commit(&self, value: T) -> Result<(), StoreError> {
        self.wait_for(Some(value)).await
    }

    /// Hands `value` over without waiting for the commit (but waiting for room in the queue).
    pub(crate) async fn enqueue(&self, value: T) -> Result<(), StoreError> {
        self.send(Item {
            value: Some(value),
            done: None,
        })
        .await
    }

    /// Waits until everything handed over so far is committed: for a clean shutdown.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        self.wait_for(None).await
    }

    async fn wait_for(&self, value: Option<T>) -> Result<(), StoreError> {
        let (done, committed) = oneshot::channel();
        self.send(Item {
            value,
            done: Some(done),
        })
        .await?;
        committed
            .await
            .map_err(|_| StoreError::Database("the writer stopped".into()))?
    }

    async fn send(&self, item: Item<T>) -> Result<(), StoreError> {
        self.tx
            .send(item)
            .await
            .map_err(|_| StoreError::Database("the writer stopped".into()))
    }
}

async fn flush_with_retries<T, F, Fut>(
    name: &'static str,
    flush: &F,
    values: Arc<Vec<T>>,
) -> Result<Refusals, StoreError>
where
    F: Fn(Arc<Vec<T>>) -> Fut,
    Fut: Future<Output = Result<Refusals, StoreError>>,
{
    let mut pause = Duration::from_millis(50);
    let mut tries = 0;
    loop {
        tries += 1;
        match flush(values.clone()).await {
            Ok(refusals) => return Ok(refusals),
            Err(error) if tries < FLUSH_TRIES => {
                tracing::warn!(writer = name, %error, rows = values.len(), tries, "Group commit failed; retrying.");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(error) => {
                tracing::error!(writer = name, %error, rows = values.len(), "Group commit failed; giving up on this batch.");
                return Err(error);
            }
        }
    }
}

/// Splits `items` into chunks whose sizes are powers of two, at most `max` (itself a power of two):
/// a batch of any size then needs only a few distinct statements, which the driver's statement
/// cache keeps prepared instead of parsing a new one for every batch size.
pub(crate) fn power_of_two_chunks<T>(mut items: &[T], max: usize) -> Vec<&[T]> {
    debug_assert!(max.is_power_of_two());
    let mut chunks = Vec::new();
    while !items.is_empty() {
        let size = max.min(1 << items.len().ilog2());
        let (chunk, rest) = items.split_at(size);
        chunks.push(chunk);
        items = rest;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn chunks_are_powers_of_two_that_cover_everything() {
        let items: Vec<u32> = (0..1000).collect();
        let chunks = power_of_two_chunks(&items, 256);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [256, 256, 256, 128, 64, 32, 8]);
        assert_eq!(chunks.concat(), items);
        assert!(power_of_two_chunks::<u32>(&[], 256).is_empty());
    }

    #[tokio::test]
    async fn concurrent_commits_share_transactions() {
        let flushes = Arc::new(Mutex::new(Vec::new()));
        let seen = flushes.clone();
        let batcher = Batcher::spawn("test", 100, move |values: Arc<Vec<u32>>| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                seen.lock().unwrap().push(values.len());
                Ok(Refusals::new())
            }
        });
        let commits: Vec<_> = (0..500)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.commit(i).await })
            })
            .collect();
        for commit in commits {
            commit.await.unwrap().unwrap();
        }
        let flushes = flushes.lock().unwrap();
        assert_eq!(flushes.iter().sum::<usize>(), 500);
        assert!(flushes.len() < 500, "every commit took its own flush");
    }

    #[tokio::test]
    async fn a_flush_waits_for_everything_enqueued_before_it() {
        let committed = Arc::new(Mutex::new(Vec::new()));
        let seen = committed.clone();
        let batcher = Batcher::spawn("test", 4, move |values: Arc<Vec<u32>>| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                seen.lock().unwrap().extend(values.iter().copied());
                Ok(Refusals::new())
            }
        });
        for value in 0..10 {
            batcher.enqueue(value).await.unwrap();
        }
        batcher.flush().await.unwrap();
        assert_eq!(*committed.lock().unwrap(), (0..10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_flush_reports_writes_that_failed_commits_lost() {
        let batcher = Batcher::spawn("test", 4, |_: Arc<Vec<u32>>| async {
            Err(StoreError::Database("down".into()))
        });
        batcher.enqueue(1).await.unwrap();
        assert!(batcher.flush().await.is_err());
    }

    #[tokio::test]
    async fn a_failing_flush_is_reported_to_every_waiter() {
        let batcher = Batcher::spawn("test", 10, |_: Arc<Vec<u32>>| async {
            Err(StoreError::Database("down".into()))
        });
        assert!(batcher.commit(1).await.is_err());
    }

    #[tokio::test]
    async fn a_refused_value_fails_alone() {
        let batcher = Batcher::spawn("test", 10, |values: Arc<Vec<u32>>| async move {
            Ok(values
                .iter()
                .enumerate()
                .filter(|(_, value)| **value == 13)
                .map(|(index, _)| (index, "unlucky".to_owned()))
                .collect())
        });
        let commits: Vec<_> = [12, 13, 14]
            .into_iter()
            .map(|value| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.commit(value).await })
            })
            .collect();
        let results: Vec<_> = futures_util::future::join_all(commits)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(matches!(&results[1], Err(StoreError::Refused(reason)) if reason == "unlucky"));
    }
}
