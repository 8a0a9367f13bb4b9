//! Registered job types: kept in the store, and in each process as a [`LiveCatalog`] that follows
//! the store within a second, so that a type changed on one replica is seen by all of them.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use conveyor_schemas::{FieldError, JobTypeCatalog, JobTypeInfo, SigningSecret};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue, EntityTrait, QueryOrder};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::entity::{job_types, queues};
use crate::{Database, StoreError};

/// How often each process reads the registered types again.
pub const REFRESH: Duration = Duration::from_millis(500);

/// The job types operators registered, as the store keeps them.
#[derive(Clone)]
pub struct JobTypeStore {
    db: Database,
}

impl JobTypeStore {
    pub fn new(db: Database) -> JobTypeStore {
        JobTypeStore { db }
    }

    /// Every registered type, by name. Read from the primary: a replica behind would bring back a
    /// type just removed.
    pub async fn list(&self) -> Result<Vec<JobTypeInfo>, StoreError> {
        job_types::Entity::find()
            .order_by_asc(job_types::Column::Name)
            .all(&self.db.write)
            .await?
            .into_iter()
            .map(|row| decode(&row))
            .collect()
    }

    pub async fn get(&self, name: &str) -> Result<Option<JobTypeInfo>, StoreError> {
        job_types::Entity::find_by_id(name)
            .one(&self.db.write)
            .await?
            .map(|row| decode(&row))
            .transpose()
    }

    /// Registers `info` or replaces the type of its name; `true` when it is new.
    pub async fn put(&self, info: &JobTypeInfo) -> Result<bool, StoreError> {
        let stored = Stored {
            info: info.clone(),
            signing_secret: info.signing_secret.as_ref().map(SigningSecret::expose),
        };
        let definition = serde_json::to_string(&stored)
            .map_err(|error| StoreError::Refused(format!("job type `{}`: {error}", info.name)))?;
        let row = job_types::ActiveModel {
            name: ActiveValue::Set(info.name.clone()),
            definition: ActiveValue::Set(definition),
            updated_at: ActiveValue::Set(Utc::now()),
        };
        // Inserted unless the name is taken, then updated: two first registrations of one name
        // at once make one type, not an error.
        let inserted = job_types::Entity::insert(row.clone())
            .on_conflict(
                OnConflict::column(job_types::Column::Name)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db.write)
            .await?;
        if inserted == 0 {
            job_types::Entity::update(row).exec(&self.db.write).await?;
        }
        self.keep_queue(&info.queue).await?;
        Ok(inserted > 0)
    }

    /// Remembers `queue` for good (see [`JobTypeStore::queues`]).
    async fn keep_queue(&self, queue: &str) -> Result<(), StoreError> {
        let row = queues::ActiveModel {
            name: ActiveValue::Set(queue.to_owned()),
            created_at: ActiveValue::Set(Utc::now()),
        };
        queues::Entity::insert(row)
            .on_conflict(
                OnConflict::column(queues::Column::Name)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db.write)
            .await?;
        Ok(())
    }

    /// Every queue a registered type ever named, whether or not one names it now: commands sent
    /// on a queue before its last type moved away (or was removed) still wait there.
    pub async fn queues(&self) -> Result<BTreeSet<String>, StoreError> {
        let rows = queues::Entity::find().all(&self.db.write).await?;
        Ok(rows.into_iter().map(|row| row.name).collect())
    }

    /// Removes the type `name`; `false` when there was none.
    pub async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let deleted = job_types::Entity::delete_by_id(name)
            .exec(&self.db.write)
            .await?;
        Ok(deleted.rows_affected > 0)
    }
}

/// A row's definition: the type as the API shows it, and its signing secret, which the API never
/// shows.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    info: JobTypeInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signing_secret: Option<String>,
}

fn decode(row: &job_types::Model) -> Result<JobTypeInfo, StoreError> {
    let unreadable = |error: String| {
        StoreError::Database(format!(
            "the stored job type `{}` cannot be read: {error}",
            row.name
        ))
    };
    let stored: Stored =
        serde_json::from_str(&row.definition).map_err(|error| unreadable(error.to_string()))?;
    let mut info = stored.info;
    info.signing_secret = stored
        .signing_secret
        .as_deref()
        .map(SigningSecret::parse)
        .transpose()
        .map_err(|error| unreadable(error.to_string()))?;
    Ok(info)
}

/// The catalog this process goes by: the built-in types and the registered ones, as the store
/// had them at the last refresh.
pub struct LiveCatalog {
    store: JobTypeStore,
    current: RwLock<Arc<JobTypeCatalog>>,
    /// The queues the store remembers (see [`JobTypeStore::queues`]).
    kept_queues: RwLock<BTreeSet<String>>,
}

impl LiveCatalog {
    /// The catalog as the store has it now.
    pub async fn load(store: JobTypeStore) -> Result<Arc<LiveCatalog>, StoreError> {
        let live = Arc::new(LiveCatalog {
            store,
            current: RwLock::new(Arc::new(JobTypeCatalog::built_in())),
            kept_queues: RwLock::default(),
        });
        live.refresh().await?;
        Ok(live)
    }

    pub fn current(&self) -> Arc<JobTypeCatalog> {
        self.current.read().unwrap().clone()
    }

    pub fn store(&self) -> &JobTypeStore {
        &self.store
    }

    /// Every queue to consume: those the types name now, the default queue, and those they named
    /// before.
    pub fn queues(&self) -> BTreeSet<String> {
        let mut queues = self.kept_queues.read().unwrap().clone();
        queues.extend(self.current().queues().into_iter().map(str::to_owned));
        queues
    }

    /// Reads the registered types (and the queues) again, rebuilding the catalog when the types
    /// changed.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let kept_queues = self.store.queues().await?;
        *self.kept_queues.write().unwrap() = kept_queues;
        let registered = self.store.list().await?;
        if self.current().registered().eq(registered.iter()) {
            return Ok(());
        }
        let catalog = JobTypeCatalog::with_registered(registered).map_err(
            |FieldError { field, message }| {
                StoreError::Database(format!(
                    "a stored job type is invalid at {field}: {message}"
                ))
            },
        )?;
        *self.current.write().unwrap() = Arc::new(catalog);
        Ok(())
    }

    /// Refreshes every [`REFRESH`] until `shutdown`; a failed read keeps the catalog as it was.
    pub async fn follow(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(REFRESH);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match self.refresh().await {
                Ok(()) => failing = false,
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "Could not read the registered job types; going by the ones known.");
                }
                Err(_) => {}
            }
        }
    }
}
