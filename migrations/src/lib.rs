//! Schema migrations, run by `conveyor migrate` (and at the start of `conveyor dev`). Each one
//! works on PostgreSQL and SQLite alike, but for partitioning, which is PostgreSQL's alone.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_jobs;
mod m20261124_000002_create_broker_messages;
mod m20261124_000003_create_scheduled_messages;
mod m20261203_000001_index_running_jobs;
mod m20261204_000001_partition_jobs;
mod m20261205_000001_create_job_types;
mod m20261206_000001_create_queues;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_jobs::Migration),
            Box::new(m20261124_000002_create_broker_messages::Migration),
            Box::new(m20261124_000003_create_scheduled_messages::Migration),
            Box::new(m20261203_000001_index_running_jobs::Migration),
            Box::new(m20261204_000001_partition_jobs::Migration),
            Box::new(m20261205_000001_create_job_types::Migration),
            Box::new(m20261206_000001_create_queues::Migration),
        ]
    }
}
