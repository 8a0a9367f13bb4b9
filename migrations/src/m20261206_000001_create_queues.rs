use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Every queue a job type ever named: workers go on consuming a queue after its last type moved
/// to another queue or was removed, since commands sent before may still wait on it.
#[derive(DeriveIden)]
enum Queues {
    Table,
    Name,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Queues::Table)
                    .if_not_exists()
                    .col(string_len(Queues::Name, 63).primary_key())
                    .col(timestamp_with_time_zone(Queues::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Queues::Table).to_owned())
            .await
    }
}
