//! PostgreSQL's jobs table is partitioned by id, a day per partition: UUIDv7 ids begin with the
//! millisecond they were made, so the ids of a day form one range. Days are made a week ahead,
//! and a day whose jobs all ended before the retention cutoff is dropped whole, which costs the
//! database nothing like deleting its rows. Whatever no day holds (jobs from before the table was
//! partitioned, jobs made while no day was ready) is pruned row by row like SQLite's.

use chrono::{DateTime, Days, NaiveDate, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use uuid::Uuid;

use crate::jobs::terminal_statuses_sql;
use crate::{DatabaseKind, JobStore, StoreError};

/// Days made ahead of today, so that a pruner that is away for a while leaves no job without its
/// day.
const DAYS_AHEAD: u64 = 7;
/// How long dropping a day may wait for the jobs table's lock: while it waits, other statements
/// on the table wait behind it.
const LOCK_TIMEOUT_MS: u32 = 200;

/// The smallest UUIDv7 of the millisecond `at`: partitions start and end on such bounds.
fn first_id_at(at: DateTime<Utc>) -> Uuid {
    let millis = u128::try_from(at.timestamp_millis()).unwrap_or(0);
    Uuid::from_u128(millis << 80)
}

/// The millisecond a UUIDv7 was made.
fn made_at(id: Uuid) -> Option<DateTime<Utc>> {
    let millis = i64::try_from(id.as_u128() >> 80).ok()?;
    DateTime::from_timestamp_millis(millis)
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// The name of the partition of `day`.
fn day_partition(day: NaiveDate) -> String {
    format!("jobs_p{}", day.format("%Y%m%d"))
}

/// Where a partition's range ends, from PostgreSQL's text of its bounds
/// (`FOR VALUES FROM (…) TO ('<uuid>')`); `None` for the default partition.
fn range_end(bounds: &str) -> Option<Uuid> {
    let (_, to) = bounds.split_once(" TO ('")?;
    to.get(..36)?.parse().ok()
}

/// One partition of the jobs table.
struct Partition {
    name: String,
    /// The end of its range; `None` for the default partition.
    ends: Option<Uuid>,
}

impl JobStore {
    /// Makes the partitions of the days from `today` to [`DAYS_AHEAD`] days after, past the end
    /// of the ranges there are; returns how many it made. Nothing on SQLite.
    pub async fn make_day_partitions(&self, today: NaiveDate) -> Result<u32, StoreError> {
        if self.db.kind != DatabaseKind::Postgres {
            return Ok(0);
        }
        let covered = self.partitions().await?.iter().filter_map(|p| p.ends).max();
        let mut made = 0;
        for ahead in 0..=DAYS_AHEAD {
            let Some(day) = today.checked_add_days(Days::new(ahead)) else {
                break;
            };
            let Some(next) = day.succ_opt() else { break };
            let (from, to) = (first_id_at(day_start(day)), first_id_at(day_start(next)));
            if covered.is_some_and(|covered| from < covered) {
                continue;
            }
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF jobs FOR VALUES FROM ('{from}') TO ('{to}')",
                day_partition(day)
            );
            match self.db.write.execute_unprepared(&sql).await {
                Ok(_) => made += 1,
                // The default partition already holds jobs of that day (none was ready when they
                // came): they stay there, and are pruned row by row.
                Err(error) => {
                    tracing::warn!(%day, %error, "Could not make a day's partition of the jobs table.");
                }
            }
        }
        Ok(made)
    }

    /// Drops each partition whose range ended before `cutoff` and whose jobs all ended before it
    /// too; returns how many jobs went with them. Nothing on SQLite.
    pub async fn drop_ended_partitions(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        if self.db.kind != DatabaseKind::Postgres {
            return Ok(0);
        }
        let mut dropped = 0;
        for partition in self.partitions().await? {
            // The default partition has no end; a range that ends after the cutoff may still get
            // jobs that end after it.
            let ends = partition.ends.and_then(made_at);
            if ends.is_none_or(|ends| ends > cutoff) {
                continue;
            }
            if let Some(jobs) = self.drop_if_ended(&partition.name, cutoff).await? {
                tracing::info!(partition = %partition.name, jobs, "Dropped a partition of jobs that all ended before the retention period.");
                dropped += jobs;
            }
        }
        Ok(dropped)
    }

    /// Drops the partition `name` unless one of its jobs is unfinished or ended after `cutoff`;
    /// returns how many jobs it held, or `None` when it stays. The table's lock is taken first,
    /// and given up at once when others hold it: the next round tries again.
    async fn drop_if_ended(
        &self,
        name: &str,
        cutoff: DateTime<Utc>,
    ) -> Result<Option<u64>, StoreError> {
        let all = format!("SELECT count(*) AS n FROM {name}");
        let jobs = count(&self.db.write, &all).await?;
        let transaction = self.db.write.begin().await?;
        transaction
            .execute_unprepared(&format!(
                "SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'; LOCK TABLE jobs, {name} IN ACCESS EXCLUSIVE MODE"
            ))
            .await?;
        let live = format!(
            "SELECT count(*) AS n FROM (SELECT 1 FROM {name} WHERE status NOT IN ({}) \
             OR updated_at >= '{}' LIMIT 1) AS live",
            terminal_statuses_sql(),
            cutoff.to_rfc3339()
        );
        if count(&transaction, &live).await? > 0 {
            return Ok(None);
        }
        transaction
            .execute_unprepared(&format!("DROP TABLE {name}"))
            .await?;
        transaction.commit().await?;
        Ok(Some(jobs))
    }

    async fn partitions(&self) -> Result<Vec<Partition>, StoreError> {
        let rows = self
            .db
            .write
            .query_all(Statement::from_string(
                DbBackend::Postgres,
                "SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bounds
                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'jobs'::regclass",
            ))
            .await?;
        rows.iter()
            .map(|row| {
                let bounds: String = row.try_get("", "bounds")?;
                Ok(Partition {
                    name: row.try_get("", "name")?,
                    ends: range_end(&bounds),
                })
            })
            .collect()
    }
}

/// The `n` that the query `sql` answers.
async fn count(on: &impl ConnectionTrait, sql: &str) -> Result<u64, StoreError> {
    let row = on
        .query_one(Statement::from_string(DbBackend::Postgres, sql))
        .await?;
    let n: i64 = row
        .map(|row| row.try_get("", "n"))
        .transpose()?
        .unwrap_or(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_days_range_is_the_ids_made_on_that_day() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        let start = first_id_at(day_start(day));
        assert_eq!(made_at(start), Some(day_start(day)));
        assert_eq!(start.to_string(), "01a23e59-c400-0000-0000-000000000000");
        let made_that_day = Uuid::now_v7();
        let today = Utc::now().date_naive();
        assert!(first_id_at(day_start(today)) <= made_that_day);
        assert!(made_that_day < first_id_at(day_start(today.succ_opt().unwrap())));
        assert_eq!(day_partition(day), "jobs_p20261204");
    }

    #[test]
    fn a_ranges_end_is_read_from_its_bounds() {
        let end = "019ae6ff-9000-0000-0000-000000000000";
        let bounds = format!("FOR VALUES FROM (MINVALUE) TO ('{end}')");
        assert_eq!(range_end(&bounds), Some(end.parse().unwrap()));
        let bounds = format!("FOR VALUES FROM ('{end}') TO ('{end}')");
        assert_eq!(range_end(&bounds), Some(end.parse().unwrap()));
        assert_eq!(range_end("DEFAULT"), None);
    }
}
