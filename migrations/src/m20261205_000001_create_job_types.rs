use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Job types an operator registered: each row's `definition` is the type as the API shows it.
#[derive(DeriveIden)]
enum JobTypes {
    Table,
    Name,
    Definition,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    JobType,
    Status,
    Tenant,
    Id,
}

/// HTTP claims take turns among the tenants with jobs of a type waiting, and take each tenant's
/// oldest.
const CLAIMABLE: &str = "idx_jobs_type_status_tenant_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(JobTypes::Table)
                    .if_not_exists()
                    .col(string_len(JobTypes::Name, 63).primary_key())
                    .col(text(JobTypes::Definition))
                    .col(timestamp_with_time_zone(JobTypes::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(CLAIMABLE)
                    .table(Jobs::Table)
                    .if_not_exists()
                    .col(Jobs::JobType)
                    .col(Jobs::Status)
                    .col(Jobs::Tenant)
                    .col(Jobs::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(CLAIMABLE).table(Jobs::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(JobTypes::Table).to_owned())
            .await
    }
}
