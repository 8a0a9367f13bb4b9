use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Status,
    UpdatedAt,
}

const NAME: &str = "idx_jobs_status_updated_at";

/// The rescuer's sweep finds `running` jobs by how long ago they last changed.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NAME)
                    .table(Jobs::Table)
                    .if_not_exists()
                    .col(Jobs::Status)
                    .col(Jobs::UpdatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(NAME).table(Jobs::Table).to_owned())
            .await
    }
}
