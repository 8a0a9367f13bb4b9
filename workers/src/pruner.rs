//! Retention: jobs that ended longer ago than the retention period are deleted from the store, by
//! one process of the deployment at a time: on PostgreSQL a day's partition at once where all its
//! jobs are that old (the pruner also makes the days ahead), else in bounded batches.

use std::time::Duration;

use chrono::Utc;
use conveyor_store::{Ledger, StoreError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::duty::Duty;
use crate::metrics;

/// Jobs deleted per statement: small enough that no delete holds locks for long.
const BATCH: u64 = 1_000;
/// Between two batches of one round, so that pruning a large backlog leaves the database to
/// everyone else most of the time.
const BATCH_PAUSE: Duration = Duration::from_millis(50);
/// The id whose lease makes its holder the deployment's pruner.
const PRUNER: Uuid = Uuid::from_u128(0x0c0e_7e70_0000_4000_8000_7072_756e_6572);

pub struct Pruner {
    ledger: Ledger,
    /// `None`: jobs are kept for good, and only partitions are made.
    retention: Option<Duration>,
    every: Duration,
    duty: Duty,
}

impl Pruner {
    /// Deletes, every `every`, the jobs that ended more than `retention` ago.
    pub fn new(ledger: Ledger, retention: Option<Duration>, every: Duration) -> Pruner {
        let duty = Duty::new(ledger.cache().clone(), "pruner", PRUNER);
        Pruner {
            ledger,
            retention,
            every,
            duty,
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(self.every);
        while let Some(held) = self.duty.next_turn(&mut ticks, &shutdown).await {
            if !held {
                continue;
            }
            let pruned = tokio::select! {
                _ = shutdown.cancelled() => break,
                pruned = self.round() => pruned,
            };
            if let Err(error) = pruned {
                tracing::warn!(%error, "A pruning round stopped early; the next one goes on.");
            }
        }
        self.duty.give_up().await;
    }

    /// Makes the days ahead, drops the days that ended before the cutoff, then deletes batch after
    /// batch until no job is left that ended before it.
    async fn round(&self) -> Result<(), StoreError> {
        let store = self.ledger.store();
        let now = Utc::now();
        store.make_day_partitions(now.date_naive()).await?;
        let Some(retention) = self.retention else {
            return Ok(());
        };
        let cutoff = now - chrono::Duration::from_std(retention).unwrap_or_default();
        let mut total = store.drop_ended_partitions(cutoff).await?;
        metrics::PRUNED.inc_by(total);
        loop {
            let deleted = store.prune_finished(cutoff, BATCH).await?;
            metrics::PRUNED.inc_by(deleted);
            total += deleted;
            if deleted < BATCH {
                break;
            }
            tokio::time::sleep(BATCH_PAUSE).await;
        }
        if total > 0 {
            tracing::info!(pruned = total, %cutoff, "Pruned jobs that ended before the retention period.");
        }
        Ok(())
    }
}
