//! Registering and removing job types (scope `admin`). No HTTP here.

use std::sync::Arc;

use conveyor_events::{Queues, dead_letter};
use conveyor_schemas::lifecycle::{Event, Kept};
use conveyor_schemas::{
    FieldError, JobMode, JobStatus, JobTypeInfo, JobTypeSpec, SigningSecret, is_built_in,
    taken_by_built_in,
};
use conveyor_store::{Change, Ledger, LiveCatalog};
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::ApiError;

/// Unfinished jobs failed per store query when a type is removed by force.
const REMOVAL_PAGE: u64 = 256;

/// What `DELETE /v1/job-types/{name}` did.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobTypeRemoved {
    pub name: String,
    /// Unfinished jobs of the type that were failed (with `?force=true`).
    pub failed_jobs: u64,
}

/// A type as `PUT /v1/job-types/{name}` answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    #[serde(flatten)]
    pub info: JobTypeInfo,
    /// A push type's signing secret (`whsec_…`), when one was made for it now: shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(skip)]
    pub created: bool,
}

/// The answer of `POST /v1/job-types/{name}/secret/rotate`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedSecret {
    /// The new `whsec_…` secret: shown this once.
    pub secret: String,
}

pub struct TypeRegistry {
    catalog: Arc<LiveCatalog>,
    ledger: Ledger,
    queues: Arc<Queues>,
}

impl TypeRegistry {
    pub fn new(catalog: Arc<LiveCatalog>, ledger: Ledger, queues: Arc<Queues>) -> TypeRegistry {
        TypeRegistry {
            catalog,
            ledger,
            queues,
        }
    }

    /// Registers or replaces the type `name`; `true` when it is new. Seen at once here, and by
    /// every other process at its next refresh.
    pub async fn put(&self, name: &str, spec: JobTypeSpec) -> Result<Registered, ApiError> {
        let mut info = spec.define(name)?;
        let mut made_secret = None;
        if info.mode == JobMode::Push && info.signing_secret.is_none() {
            // A replaced push type keeps its secret, so its receivers need no change.
            let kept = self.catalog.store().get(name).await?;
            info.signing_secret = match kept.and_then(|kept| kept.signing_secret) {
                Some(kept) => Some(kept),
                None => {
                    let made = SigningSecret::generate();
                    made_secret = Some(made.expose());
                    Some(made)
                }
            };
        }
        // Its queue exists before any replica can accept a job of the type.
        self.queues
            .declare(&info.queue)
            .await
            .map_err(|error| ApiError::BrokerUnavailable(error.to_string()))?;
        let created = self.catalog.store().put(&info).await?;
        self.catalog.refresh().await?;
        tracing::info!(job_type = name, created, "Job type registered.");
        Ok(Registered {
            info,
            secret: made_secret,
            created,
        })
    }

    /// Gives push type `name` a new signing secret, used from the next delivery on (by every
    /// worker within a second), and returns it: the only time it is shown.
    pub async fn rotate_secret(&self, name: &str) -> Result<RotatedSecret, ApiError> {
        let mut info = self.get(name).await?;
        if info.mode != JobMode::Push {
            return Err(ApiError::from(FieldError {
                field: "name".into(),
                message: format!(
                    "`{name}` is a {} type: only push types have a secret",
                    info.mode.as_str()
                ),
            }));
        }
        let made = SigningSecret::generate();
        let secret = made.expose();
        info.signing_secret = Some(made);
        self.catalog.store().put(&info).await?;
        self.catalog.refresh().await?;
        tracing::info!(job_type = name, "Signing secret rotated.");
        Ok(RotatedSecret { secret })
    }

    /// A built-in or registered type, as the store has it now.
    pub async fn get(&self, name: &str) -> Result<JobTypeInfo, ApiError> {
        if is_built_in(name) {
            return self
                .catalog
                .current()
                .get(name)
                .cloned()
                .ok_or_else(|| ApiError::JobTypeNotFound(name.into()));
        }
        self.catalog
            .store()
            .get(name)
            .await?
            .ok_or_else(|| ApiError::JobTypeNotFound(name.into()))
    }

    /// Removes the type `name`: refused while it has unfinished jobs, unless `force`, which
    /// fails them (and dead-letters them, like any job that failed for good).
    pub async fn remove(&self, name: &str, force: bool) -> Result<JobTypeRemoved, ApiError> {
        if is_built_in(name) {
            return Err(taken_by_built_in(name).into());
        }
        let store = self.ledger.store();
        if self.catalog.store().get(name).await?.is_none() {
            return Err(ApiError::JobTypeNotFound(name.into()));
        }
        if !force && !store.unfinished_of_type(name, 1).await?.is_empty() {
            return Err(ApiError::JobTypeInUse(name.into()));
        }
        // Removed first, so that no job of the type is accepted while its unfinished ones fail.
        self.catalog.store().delete(name).await?;
        self.catalog.refresh().await?;
        let mut failed_jobs = 0;
        loop {
            let page = store.unfinished_of_type(name, REMOVAL_PAGE).await?;
            let mut progressed = false;
            for job in &page {
                match self.ledger.apply(job, &Event::TypeRemoved).await? {
                    Change::Applied(failed) => {
                        progressed = true;
                        failed_jobs += 1;
                        if failed.status == JobStatus::Failed {
                            dead_letter(&self.queues, &failed)
                                .await
                                .map_err(|error| ApiError::BrokerUnavailable(error.to_string()))?;
                        }
                    }
                    // The store missed how the job ended; it learns it now.
                    Change::Declined(ended, Kept::Terminal) => {
                        progressed = true;
                        store.write(ended).await?;
                    }
                    Change::Declined(..) => {}
                }
            }
            if page.len() < REMOVAL_PAGE as usize || !progressed {
                break;
            }
        }
        tracing::warn!(job_type = name, failed_jobs, "Job type removed.");
        Ok(JobTypeRemoved {
            name: name.into(),
            failed_jobs,
        })
    }
}
