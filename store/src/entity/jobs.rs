use conveyor_schemas::{Job, JobStatus};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant: String,
    pub job_type: String,
    pub status: String,
    pub payload: Json,
    pub result: Option<Json>,
    pub error: Option<String>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub progress: Option<f64>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub run_at: Option<DateTimeUtc>,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub timeout_ms: Option<i64>,
    pub version: i64,
    pub cancel_requested: bool,
    pub idempotency_key: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl From<&Job> for Model {
    fn from(job: &Job) -> Model {
        Model {
            id: job.id,
            tenant: job.tenant.clone(),
            job_type: job.job_type.clone(),
            status: job.status.as_str().to_owned(),
            payload: job.payload.clone(),
            result: job.result.clone(),
            error: job.error.clone(),
            attempts: job.attempts as i32,
            max_attempts: job.max_attempts as i32,
            progress: job.progress,
            created_at: job.created_at,
            updated_at: job.updated_at,
            run_at: job.run_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            timeout_ms: job.timeout_ms.map(|ms| ms as i64),
            version: job.version as i64,
            cancel_requested: job.cancel_requested,
            idempotency_key: job.idempotency_key.clone(),
        }
    }
}

impl TryFrom<Model> for Job {
    type Error = crate::StoreError;

    fn try_from(model: Model) -> Result<Job, Self::Error> {
        let status = JobStatus::parse(&model.status).ok_or_else(|| {
            crate::StoreError::Database(format!(
                "job {} has an unknown status `{}`",
                model.id, model.status
            ))
        })?;
        Ok(Job {
            id: model.id,
            job_type: model.job_type,
            status,
            payload: model.payload,
            result: model.result,
            error: model.error,
            attempts: model.attempts as u32,
            max_attempts: model.max_attempts as u32,
            progress: model.progress,
            created_at: model.created_at,
            updated_at: model.updated_at,
            run_at: model.run_at,
            started_at: model.started_at,
            finished_at: model.finished_at,
            timeout_ms: model.timeout_ms.map(|ms| ms as u64),
            version: model.version as u64,
            tenant: model.tenant,
            cancel_requested: model.cancel_requested,
            idempotency_key: model.idempotency_key,
        })
    }
}
