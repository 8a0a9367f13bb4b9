use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The journal of the in-process broker: messages published and not yet acknowledged.
#[derive(DeriveIden)]
enum BrokerMessages {
    Table,
    Seq,
    Topic,
    MessageKey,
    Payload,
    DeliverAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BrokerMessages::Table)
                    .if_not_exists()
                    .col(big_integer(BrokerMessages::Seq).primary_key())
                    .col(string_len(BrokerMessages::Topic, 255))
                    .col(string_len(BrokerMessages::MessageKey, 255))
                    .col(blob(BrokerMessages::Payload))
                    .col(big_integer_null(BrokerMessages::DeliverAtMs))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BrokerMessages::Table).to_owned())
            .await
    }
}
