use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    Tenant,
    JobType,
    Status,
    Payload,
    Result,
    Error,
    Attempts,
    MaxAttempts,
    Progress,
    CreatedAt,
    UpdatedAt,
    RunAt,
    StartedAt,
    FinishedAt,
    TimeoutMs,
    Version,
    CancelRequested,
    IdempotencyKey,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .if_not_exists()
                    .col(uuid(Jobs::Id).primary_key())
                    .col(string_len(Jobs::Tenant, 128))
                    .col(string_len(Jobs::JobType, 128))
                    .col(string_len(Jobs::Status, 16))
                    .col(json_binary(Jobs::Payload))
                    .col(json_binary_null(Jobs::Result))
                    .col(text_null(Jobs::Error))
                    .col(integer(Jobs::Attempts))
                    .col(integer(Jobs::MaxAttempts))
                    .col(double_null(Jobs::Progress))
                    .col(timestamp_with_time_zone(Jobs::CreatedAt))
                    .col(timestamp_with_time_zone(Jobs::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Jobs::RunAt))
                    .col(timestamp_with_time_zone_null(Jobs::StartedAt))
                    .col(timestamp_with_time_zone_null(Jobs::FinishedAt))
                    .col(big_integer_null(Jobs::TimeoutMs))
                    .col(big_integer(Jobs::Version))
                    .col(boolean(Jobs::CancelRequested))
                    .col(string_len_null(Jobs::IdempotencyKey, 256))
                    .to_owned(),
            )
            .await?;
        // Lists are per tenant, newest first (UUIDv7 ids sort by time), optionally by status or
        // type; idempotency keys are looked up per tenant when the cache has forgotten them.
        let indexes = [
            ("idx_jobs_tenant_id", vec![Jobs::Tenant, Jobs::Id]),
            (
                "idx_jobs_tenant_status_id",
                vec![Jobs::Tenant, Jobs::Status, Jobs::Id],
            ),
            (
                "idx_jobs_tenant_type_id",
                vec![Jobs::Tenant, Jobs::JobType, Jobs::Id],
            ),
            (
                "idx_jobs_tenant_idempotency_key",
                vec![Jobs::Tenant, Jobs::IdempotencyKey],
            ),
        ];
        for (name, columns) in indexes {
            let mut index = Index::create();
            index.name(name).table(Jobs::Table).if_not_exists();
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Jobs::Table).to_owned())
            .await
    }
}
