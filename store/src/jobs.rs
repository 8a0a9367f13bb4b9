use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use conveyor_schemas::{Job, JobStatus};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Select, TransactionTrait,
};
use uuid::Uuid;

use crate::batch::{Batcher, Refusals, power_of_two_chunks};
use crate::entity::jobs;
use crate::{Database, StoreError};

/// Snapshots per group commit.
const WRITE_BATCH: usize = 512;
/// Rows per statement: 19 columns a row keeps a statement well under SQLite's 32,766 bound
/// parameters.
const ROWS_PER_STATEMENT: usize = 256;

/// The states a job ends in, as the database spells them.
fn terminal_statuses() -> impl Iterator<Item = &'static str> {
    JobStatus::ALL
        .into_iter()
        .filter(|status| status.is_terminal())
        .map(JobStatus::as_str)
}

/// The terminal states as an SQL list, for `status NOT IN (…)`.
pub(crate) fn terminal_statuses_sql() -> String {
    let quoted: Vec<String> = terminal_statuses().map(|s| format!("'{s}'")).collect();
    quoted.join(", ")
}

/// Jobs in the database: written in group commits, read from the replica when there is one.
#[derive(Clone)]
pub struct JobStore {
    writes: Batcher<Job>,
    pub(crate) db: Database,
}

/// A page of `GET /v1/jobs`: newest first, strictly older than `before`.
#[derive(Debug, Clone)]
pub struct JobQuery {
    pub job_type: Option<String>,
    pub status: Option<JobStatus>,
    pub before: Option<Uuid>,
    pub limit: u64,
}

#[derive(Debug, Clone)]
pub struct JobPage {
    pub items: Vec<Job>,
    /// The id to pass as `before` for the next page; `None` on the last page.
    pub next_cursor: Option<Uuid>,
}

impl JobStore {
    pub fn new(db: Database) -> JobStore {
        let connection = db.write.clone();
        let newest_wins = newest_wins();
        let writes = Batcher::spawn("jobs", WRITE_BATCH, move |batch| {
            upsert_isolating(connection.clone(), newest_wins.clone(), batch)
        });
        JobStore { writes, db }
    }

    /// Records a snapshot and waits until it is committed.
    pub async fn write(&self, job: Job) -> Result<(), StoreError> {
        self.writes.commit(job).await
    }

    /// Records a snapshot in the next group commit without waiting for it: for states that a
    /// later snapshot supersedes anyway, and that the broker can replay if this one is lost.
    pub async fn write_soon(&self, job: Job) -> Result<(), StoreError> {
        self.writes.enqueue(job).await
    }

    /// Waits until every snapshot handed over so far is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.writes.flush().await
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        jobs::Entity::find_by_id(id)
            .one(&self.db.read)
            .await?
            .map(Job::try_from)
            .transpose()
    }

    /// The job as the primary database has it: newer than a replica's.
    pub async fn get_newest(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        jobs::Entity::find_by_id(id)
            .one(&self.db.write)
            .await?
            .map(Job::try_from)
            .transpose()
    }

    pub async fn find_by_idempotency_key(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<Job>, StoreError> {
        jobs::Entity::find()
            .filter(jobs::Column::Tenant.eq(tenant))
            .filter(jobs::Column::IdempotencyKey.eq(key))
            .one(&self.db.read)
            .await?
            .map(Job::try_from)
            .transpose()
    }

    pub async fn list(&self, tenant: &str, query: &JobQuery) -> Result<JobPage, StoreError> {
        let mut select = jobs::Entity::find().filter(jobs::Column::Tenant.eq(tenant));
        if let Some(job_type) = &query.job_type {
            select = select.filter(jobs::Column::JobType.eq(job_type.as_str()));
        }
        if let Some(status) = query.status {
            select = select.filter(jobs::Column::Status.eq(status.as_str()));
        }
        if let Some(before) = query.before {
            select = select.filter(jobs::Column::Id.lt(before));
        }
        let mut rows = select
            .order_by_desc(jobs::Column::Id)
            .limit(query.limit + 1)
            .all(&self.db.read)
            .await?;
        let next_cursor = if rows.len() as u64 > query.limit {
            rows.truncate(query.limit as usize);
            rows.last().map(|row| row.id)
        } else {
            None
        };
        let items = rows
            .into_iter()
            .map(Job::try_from)
            .collect::<Result<_, _>>()?;
        Ok(JobPage { items, next_cursor })
    }
}

impl JobStore {
    /// Deletes up to `limit` jobs that ended before `cutoff`, oldest first; returns how many.
    /// Bounded, so that pruning a large backlog never holds a long transaction or lock.
    pub async fn prune_finished(
        &self,
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        let oldest = jobs::Entity::find()
            .select_only()
            .column(jobs::Column::Id)
            .filter(jobs::Column::Status.is_in(terminal_statuses()))
            .filter(jobs::Column::UpdatedAt.lt(cutoff))
            .order_by_asc(jobs::Column::UpdatedAt)
            .limit(limit)
            .into_query();
        let deleted = jobs::Entity::delete_many()
            .filter(jobs::Column::Id.in_subquery(oldest))
            .exec(&self.db.write)
            .await?;
        Ok(deleted.rows_affected)
    }

    /// Up to `limit` jobs that the store shows `running`, unchanged since before `cutoff`, in the
    /// order of that change and after `after` (the last job of the previous page): where the
    /// rescuer looks for attempts whose worker was lost. Read from the primary: a replica behind
    /// would show attempts that ended long ago.
    pub async fn running_before(
        &self,
        cutoff: DateTime<Utc>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u64,
    ) -> Result<Vec<Job>, StoreError> {
        let mut select = jobs::Entity::find()
            .filter(jobs::Column::Status.eq(JobStatus::Running.as_str()))
            .filter(jobs::Column::UpdatedAt.lt(cutoff));
        if let Some((updated_at, id)) = after {
            select = select.filter(
                Condition::any()
                    .add(jobs::Column::UpdatedAt.gt(updated_at))
                    .add(
                        Condition::all()
                            .add(jobs::Column::UpdatedAt.eq(updated_at))
                            .add(jobs::Column::Id.gt(id)),
                    ),
            );
        }
        self.read_primary(
            select
                .order_by_asc(jobs::Column::UpdatedAt)
                .order_by_asc(jobs::Column::Id)
                .limit(limit),
        )
        .await
    }
}

impl JobStore {
    /// Up to `limit` tenants with `queued` jobs of `job_type`, in name order from just after
    /// `after`, wrapping round to the first: whose turn it is at an HTTP claim. One probe of the
    /// claim index per tenant, however many jobs each has queued.
    pub async fn tenants_queued(
        &self,
        job_type: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut tenants: Vec<String> = Vec::new();
        let (mut cursor, mut wrapped) = (after.to_owned(), after.is_empty());
        while tenants.len() < limit {
            let next: Option<String> = jobs::Entity::find()
                .select_only()
                .column(jobs::Column::Tenant)
                .filter(jobs::Column::JobType.eq(job_type))
                .filter(jobs::Column::Status.eq(JobStatus::Queued.as_str()))
                .filter(jobs::Column::Tenant.gt(cursor.as_str()))
                .order_by_asc(jobs::Column::Tenant)
                .into_tuple()
                .one(&self.db.write)
                .await?;
            match next {
                Some(tenant) if tenants.first() == Some(&tenant) => break,
                Some(tenant) => {
                    cursor.clone_from(&tenant);
                    tenants.push(tenant);
                }
                None if wrapped => break,
                None => {
                    wrapped = true;
                    cursor.clear();
                }
            }
        }
        Ok(tenants)
    }

    /// The oldest `limit` `queued` jobs of `job_type` of `tenant`.
    pub async fn queued_of_tenant(
        &self,
        job_type: &str,
        tenant: &str,
        limit: u64,
    ) -> Result<Vec<Job>, StoreError> {
        let queued = jobs::Entity::find()
            .filter(jobs::Column::JobType.eq(job_type))
            .filter(jobs::Column::Status.eq(JobStatus::Queued.as_str()))
            .filter(jobs::Column::Tenant.eq(tenant))
            .order_by_asc(jobs::Column::Id);
        self.read_primary(queued.limit(limit)).await
    }

    /// Up to `limit` jobs of `types` held until a time (`scheduled`, or `retrying` after a failed
    /// attempt) and due at `now`, the longest due first.
    pub async fn held_and_due(
        &self,
        types: &[String],
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Job>, StoreError> {
        let held = [JobStatus::Scheduled, JobStatus::Retrying].map(JobStatus::as_str);
        let due = jobs::Entity::find()
            .filter(jobs::Column::JobType.is_in(types))
            .filter(jobs::Column::Status.is_in(held))
            .filter(jobs::Column::RunAt.lte(now))
            .order_by_asc(jobs::Column::RunAt);
        self.read_primary(due.limit(limit)).await
    }

    /// Up to `limit` jobs of `types` that the store shows `running` since before `cutoff`, longest
    /// running first: where a claim looks for attempts whose HTTP worker's lease ran out.
    pub async fn running_of_types_before(
        &self,
        types: &[String],
        cutoff: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Job>, StoreError> {
        let running = jobs::Entity::find()
            .filter(jobs::Column::JobType.is_in(types))
            .filter(jobs::Column::Status.eq(JobStatus::Running.as_str()))
            .filter(jobs::Column::UpdatedAt.lt(cutoff));
        self.read_primary(running.order_by_asc(jobs::Column::UpdatedAt).limit(limit))
            .await
    }

    /// Up to `limit` jobs of `job_type` that have not ended, oldest first.
    pub async fn unfinished_of_type(
        &self,
        job_type: &str,
        limit: u64,
    ) -> Result<Vec<Job>, StoreError> {
        let unfinished = jobs::Entity::find()
            .filter(jobs::Column::JobType.eq(job_type))
            .filter(jobs::Column::Status.is_not_in(terminal_statuses()));
        self.read_primary(unfinished.order_by_asc(jobs::Column::Id).limit(limit))
            .await
    }

    /// The jobs `select` finds, read from the primary: a replica behind would show jobs as they
    /// were.
    async fn read_primary(&self, select: Select<jobs::Entity>) -> Result<Vec<Job>, StoreError> {
        select
            .all(&self.db.write)
            .await?
            .into_iter()
            .map(Job::try_from)
            .collect()
    }
}

/// Writes the newest snapshot of each job in `batch`, unless the row already holds a newer one or
/// a terminal one: the database, like the cache, never moves a job backwards. A snapshot the
/// database refuses (a value it cannot hold) is split off, halving the batch until it stands
/// alone: it fails by itself, and the other jobs of the batch are committed.
async fn upsert_isolating(
    db: DatabaseConnection,
    newest_wins: OnConflict,
    batch: Arc<Vec<Job>>,
) -> Result<Refusals, StoreError> {
    let mut newest: HashMap<Uuid, &Job> = HashMap::with_capacity(batch.len());
    for job in batch.iter() {
        match newest.entry(job.id) {
            Entry::Occupied(mut seen) if job.version > seen.get().version => {
                seen.insert(job);
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(slot) => {
                slot.insert(job);
            }
        }
    }
    let newest: Vec<&Job> = newest.into_values().collect();
    let mut refused: HashMap<Uuid, String> = HashMap::new();
    let mut parts = vec![newest.as_slice()];
    while let Some(part) = parts.pop() {
        match upsert(&db, &newest_wins, part).await {
            Ok(()) => {}
            Err(StoreError::Refused(reason)) if part.len() == 1 => {
                tracing::error!(job_id = %part[0].id, %reason, "The database refused a job's snapshot.");
                refused.insert(part[0].id, reason);
            }
            Err(StoreError::Refused(_)) => {
                let (first, second) = part.split_at(part.len() / 2);
                parts.extend([first, second]);
            }
            Err(error) => return Err(error),
        }
    }
    Ok(batch
        .iter()
        .enumerate()
        .filter_map(|(index, job)| Some((index, refused.get(&job.id)?.clone())))
        .collect())
}

/// Upserts `jobs` (one snapshot per job) in one transaction.
async fn upsert(
    db: &DatabaseConnection,
    newest_wins: &OnConflict,
    jobs: &[&Job],
) -> Result<(), StoreError> {
    let rows: Vec<jobs::ActiveModel> = jobs
        .iter()
        .map(|job| jobs::Model::from(*job).into_active_model())
        .collect();
    let txn = db.begin().await?;
    for chunk in power_of_two_chunks(&rows, ROWS_PER_STATEMENT) {
        jobs::Entity::insert_many(chunk.to_vec())
            .on_conflict(newest_wins.clone())
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// The conflict clause of every job upsert: a row takes a snapshot only if it is newer and the row
/// is not terminal yet. Built once, not for every group commit.
fn newest_wins() -> OnConflict {
    let guard = format!(
        "excluded.version > jobs.version AND jobs.status NOT IN ({})",
        terminal_statuses_sql()
    );
    OnConflict::column(jobs::Column::Id)
        .update_columns([
            jobs::Column::Status,
            jobs::Column::Result,
            jobs::Column::Error,
            jobs::Column::Attempts,
            jobs::Column::MaxAttempts,
            jobs::Column::Progress,
            jobs::Column::UpdatedAt,
            jobs::Column::RunAt,
            jobs::Column::StartedAt,
            jobs::Column::FinishedAt,
            jobs::Column::TimeoutMs,
            jobs::Column::Version,
            jobs::Column::CancelRequested,
        ])
        .action_and_where(Expr::cust(guard))
        .to_owned()
}
