//! The change feed: one task per cache follows the Redis change stream and hands every kept snapshot
//! to this process's subscribers, whichever replica or worker kept it.
//!
//! A stream rather than pub/sub, because a reader that lost its connection resumes after the last
//! entry it read: changes kept during an outage are delivered on recovery instead of being missed.
//! Only changes the stream trimmed before the feed came back are lost, and that is logged.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use conveyor_schemas::Job;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisError, Script};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::keys::Keys;

/// Changes a slow subscriber may fall behind by before it must re-read (it is told it lagged).
const FEED_CAPACITY: usize = 16 * 1024;
/// How long one read waits for changes. A connection that has not answered `READ_GRACE` after that
/// is taken for dead, so that a Redis gone silent is noticed too.
const READ_BLOCK: Duration = Duration::from_secs(5);
const READ_GRACE: Duration = Duration::from_secs(2);
const READ_BATCH: usize = 512;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

static RESUME: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/resume.lua")));

/// This process's end of the change feed. Dropped with the last clone of its cache, it stops its
/// task, and subscribers are told the feed has closed.
pub(crate) struct ChangeFeed {
    sender: broadcast::Sender<Arc<Job>>,
    follower: AbortHandle,
}

impl ChangeFeed {
    /// Starts following the stream from its current end: subscribers see what is kept from now on.
    pub(crate) async fn start(
        client: Client,
        commands: &mut ConnectionManager,
        keys: &Keys,
    ) -> Result<ChangeFeed, RedisError> {
        let stream = keys.changes();
        let last: StreamRangeReply = commands.xrevrange_count(&stream, "+", "-", 1).await?;
        let cursor = last
            .ids
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_owned(), |entry| entry.id);
        let sender = broadcast::channel(FEED_CAPACITY).0;
        let follower = Follower {
            client,
            keys: keys.clone(),
            stream,
            client_name: keys.feed_client_name(),
            sender: sender.clone(),
            cursor,
            outage: false,
            pause: FIRST_PAUSE,
        };
        let follower = tokio::spawn(follower.run()).abort_handle();
        Ok(ChangeFeed { sender, follower })
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Job>> {
        self.sender.subscribe()
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

struct Follower {
    client: Client,
    keys: Keys,
    stream: String,
    client_name: String,
    sender: broadcast::Sender<Arc<Job>>,
    /// The last entry handed on: reading goes on after it.
    cursor: String,
    /// Whether the feed is cut off from Redis (and has said so).
    outage: bool,
    /// How long to wait before the next connection attempt.
    pause: Duration,
}

impl Follower {
    async fn run(mut self) {
        loop {
            let error = match self.connect().await {
                Ok(mut connection) => self.follow(&mut connection).await,
                Err(error) => error,
            };
            if !self.outage {
                tracing::warn!(
                    %error,
                    "The change feed cannot read from Redis; retrying. SSE and long-poll listeners \
                     hear of changes only once it can."
                );
                self.outage = true;
            }
            tokio::time::sleep(self.pause).await;
            self.pause = (self.pause * 2).min(MAX_PAUSE);
        }
    }

    /// A connection of the feed's own (its reads block), with the cursor placed to resume.
    async fn connect(&mut self) -> Result<MultiplexedConnection, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(READ_BLOCK + READ_GRACE));
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&self.client_name)
            .exec_async(&mut connection)
            .await?;
        let (cursor, trimmed): (String, bool) = RESUME
            .key(&self.stream)
            .arg(&self.cursor)
            .invoke_async(&mut connection)
            .await?;
        if trimmed {
            tracing::warn!(
                after = %self.cursor,
                "The change stream dropped changes before this replica read them; listeners \
                 waiting on those jobs hear of them only when they next read the job."
            );
        }
        self.cursor = cursor;
        Ok(connection)
    }

    /// Hands on every entry after the cursor as it comes, until the connection fails.
    async fn follow(&mut self, connection: &mut MultiplexedConnection) -> RedisError {
        let options = StreamReadOptions::default()
            .block(READ_BLOCK.as_millis() as usize)
            .count(READ_BATCH);
        loop {
            let read: Result<Option<StreamReadReply>, RedisError> = connection
                .xread_options(&[&self.stream], &[&self.cursor], &options)
                .await;
            let entries = match read {
                Ok(reply) => reply.into_iter().flat_map(|reply| reply.keys),
                Err(error) => return error,
            };
            // Only a read tells the outage is over: a connection may open and fail at once.
            if self.outage {
                tracing::info!(
                    "The change feed reads from Redis again; changes kept meanwhile follow."
                );
                self.outage = false;
                self.pause = FIRST_PAUSE;
            }
            for entry in entries.flat_map(|key| key.ids) {
                if let Err(error) = self.hand_on(connection, entry).await {
                    return error;
                }
            }
        }
    }

    /// Hands on the job an entry carries, or the one it names (read from the job's hash then: a
    /// version as new or newer than the named one, which subscribers take as they would either).
    async fn hand_on(
        &mut self,
        connection: &mut MultiplexedConnection,
        entry: StreamId,
    ) -> Result<(), RedisError> {
        let json = match (entry.get::<String>("job"), entry.get::<String>("id")) {
            (Some(json), _) => Some(json),
            (None, Some(id)) => match Uuid::parse_str(&id) {
                Ok(id) => connection.hget(self.keys.job(id), "json").await?,
                Err(_) => None,
            },
            (None, None) => None,
        };
        match json.map(|json| serde_json::from_str::<Job>(&json)) {
            Some(Ok(job)) => {
                // No subscribers is no error: nobody is waiting.
                let _ = self.sender.send(Arc::new(job));
            }
            Some(Err(error)) => {
                tracing::warn!(entry = %entry.id, %error, "Skipped an unreadable change.");
            }
            None => tracing::warn!(entry = %entry.id, "Skipped a change whose job is gone."),
        }
        self.cursor = entry.id;
        Ok(())
    }
}
