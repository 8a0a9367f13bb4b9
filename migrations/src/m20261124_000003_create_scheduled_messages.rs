use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Delayed messages of the Kafka and RabbitMQ brokers (scheduled jobs, retries), held until due.
#[derive(DeriveIden)]
enum ScheduledMessages {
    Table,
    Id,
    Topic,
    MessageKey,
    Payload,
    DueAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ScheduledMessages::Table)
                    .if_not_exists()
                    .col(
                        big_integer(ScheduledMessages::Id)
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(string_len(ScheduledMessages::Topic, 255))
                    .col(string_len(ScheduledMessages::MessageKey, 255))
                    .col(blob(ScheduledMessages::Payload))
                    .col(big_integer(ScheduledMessages::DueAtMs))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("scheduled_messages_due")
                    .table(ScheduledMessages::Table)
                    .col(ScheduledMessages::DueAtMs)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ScheduledMessages::Table).to_owned())
            .await
    }
}
