use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use conveyor_events::{BrokerError, Journal, JournaledMessage};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};

use crate::batch::{Batcher, Refusals, power_of_two_chunks};
use crate::entity::broker_messages;
use crate::{Database, StoreError};

/// Rows per statement (a power of two): 5 columns a row, well under SQLite's bound-parameter
/// limit.
const ROWS_PER_STATEMENT: usize = 1024;
/// Publish calls folded into one commit.
const APPENDS_PER_COMMIT: usize = 512;
const REMOVALS_PER_COMMIT: usize = 4096;

/// The in-process broker's journal, in the embedded database: a publish is confirmed by the group
/// commit that holds it, so the embedded default loses no accepted job across a restart.
pub struct SqlJournal {
    appends: Batcher<Vec<JournaledMessage>>,
    removals: Batcher<u64>,
    db: DatabaseConnection,
}

impl SqlJournal {
    pub fn new(db: &Database) -> SqlJournal {
        let connection = db.write.clone();
        let appends = Batcher::spawn("journal-appends", APPENDS_PER_COMMIT, move |batch| {
            let connection = connection.clone();
            async move {
                append_all(connection, batch)
                    .await
                    .map(|()| Refusals::new())
            }
        });
        let connection = db.write.clone();
        let removals = Batcher::spawn("journal-removals", REMOVALS_PER_COMMIT, move |batch| {
            let connection = connection.clone();
            async move {
                remove_all(connection, batch)
                    .await
                    .map(|()| Refusals::new())
            }
        });
        SqlJournal {
            appends,
            removals,
            db: db.write.clone(),
        }
    }

    /// Waits until every append and removal handed over so far is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.appends.flush().await?;
        self.removals.flush().await
    }
}

fn unavailable(error: StoreError) -> BrokerError {
    BrokerError::Unavailable(format!("journal: {error}"))
}

#[async_trait]
impl Journal for SqlJournal {
    async fn append(&self, messages: Vec<JournaledMessage>) -> Result<(), BrokerError> {
        self.appends.commit(messages).await.map_err(unavailable)
    }

    async fn remove(&self, seq: u64) -> Result<(), BrokerError> {
        self.removals.enqueue(seq).await.map_err(unavailable)
    }

    async fn pending(&self) -> Result<Vec<JournaledMessage>, BrokerError> {
        let rows = broker_messages::Entity::find()
            .order_by_asc(broker_messages::Column::Seq)
            .all(&self.db)
            .await
            .map_err(|error| unavailable(error.into()))?;
        Ok(rows
            .into_iter()
            .map(|row| JournaledMessage {
                seq: row.seq as u64,
                topic: row.topic,
                key: row.message_key,
                payload: row.payload.into(),
                deliver_at: row
                    .deliver_at_ms
                    .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
            })
            .collect())
    }
}

async fn append_all(
    db: DatabaseConnection,
    batch: Arc<Vec<Vec<JournaledMessage>>>,
) -> Result<(), StoreError> {
    let rows: Vec<broker_messages::ActiveModel> = batch
        .iter()
        .flatten()
        .map(|message| {
            broker_messages::Model {
                seq: message.seq as i64,
                topic: message.topic.clone(),
                message_key: message.key.clone(),
                payload: message.payload.to_vec(),
                deliver_at_ms: message.deliver_at.map(conveyor_events::due_millis),
            }
            .into()
        })
        .collect();
    let txn = db.begin().await?;
    for chunk in power_of_two_chunks(&rows, ROWS_PER_STATEMENT) {
        broker_messages::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

async fn remove_all(db: DatabaseConnection, batch: Arc<Vec<u64>>) -> Result<(), StoreError> {
    let txn = db.begin().await?;
    for chunk in power_of_two_chunks(&batch, ROWS_PER_STATEMENT) {
        broker_messages::Entity::delete_many()
            .filter(broker_messages::Column::Seq.is_in(chunk.iter().map(|seq| *seq as i64)))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}
