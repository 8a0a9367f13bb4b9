use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use conveyor_events::{BrokerError, HeldMessage, Outgoing, Schedule, due_millis};
use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    Statement,
};

use crate::entity::scheduled_messages;
use crate::{Database, DatabaseKind, StoreError};

/// Delayed messages of the Kafka and RabbitMQ brokers, in the database every process shares, so
/// they survive a restart of the broker or of any process.
pub struct SqlSchedule {
    db: DatabaseConnection,
    kind: DatabaseKind,
}

impl SqlSchedule {
    pub fn new(db: &Database) -> SqlSchedule {
        SqlSchedule {
            db: db.write.clone(),
            kind: db.kind,
        }
    }

    fn claim_statement(&self, now_ms: i64, lease_until_ms: i64, limit: usize) -> Statement {
        // The claim pushes the due time forward by the lease: the message stays hidden from other
        // processes while this one publishes it, and comes due again if this one dies first.
        // PostgreSQL's SKIP LOCKED lets concurrent claimers take disjoint rows; SQLite has a
        // single writer and needs none.
        let (mark, lock) = match self.kind {
            DatabaseKind::Postgres => ('$', "FOR UPDATE SKIP LOCKED"),
            DatabaseKind::Sqlite => ('?', ""),
        };
        let sql = format!(
            "UPDATE scheduled_messages SET due_at_ms = {mark}1 WHERE id IN \
             (SELECT id FROM scheduled_messages WHERE due_at_ms <= {mark}2 \
              ORDER BY due_at_ms LIMIT {mark}3 {lock}) \
             RETURNING id, topic, message_key, payload"
        );
        Statement::from_sql_and_values(
            self.db.get_database_backend(),
            sql,
            [lease_until_ms.into(), now_ms.into(), (limit as i64).into()],
        )
    }
}

fn unavailable(error: impl Into<StoreError>) -> BrokerError {
    BrokerError::Unavailable(format!("schedule: {}", error.into()))
}

#[async_trait]
impl Schedule for SqlSchedule {
    async fn hold(&self, topic: &str, messages: Vec<Outgoing>) -> Result<(), BrokerError> {
        let rows = messages
            .into_iter()
            .map(|message| scheduled_messages::ActiveModel {
                id: ActiveValue::NotSet,
                topic: ActiveValue::Set(topic.to_owned()),
                message_key: ActiveValue::Set(message.key),
                payload: ActiveValue::Set(message.payload.to_vec()),
                due_at_ms: ActiveValue::Set(message.deliver_at.map(due_millis).unwrap_or_default()),
            });
        scheduled_messages::Entity::insert_many(rows)
            .exec_without_returning(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<HeldMessage>, BrokerError> {
        let now_ms = now.timestamp_millis();
        let lease_until_ms = now_ms + lease.as_millis() as i64;
        let rows = self
            .db
            .query_all(self.claim_statement(now_ms, lease_until_ms, limit))
            .await
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|row| {
                Ok(HeldMessage {
                    id: row.try_get("", "id")?,
                    topic: row.try_get("", "topic")?,
                    key: row.try_get("", "message_key")?,
                    payload: row.try_get::<Vec<u8>>("", "payload")?.into(),
                })
            })
            .collect::<Result<_, sea_orm::DbErr>>()
            .map_err(unavailable)
    }

    async fn forget(&self, ids: Vec<i64>) -> Result<(), BrokerError> {
        scheduled_messages::Entity::delete_many()
            .filter(scheduled_messages::Column::Id.is_in(ids))
            .exec(&self.db)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
