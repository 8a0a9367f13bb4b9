use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use conveyor_schemas::Job;
use conveyor_store::{Cache, IdempotencyClaim, StoreError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, RedisError, Script};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::claims;
use crate::feed::ChangeFeed;
use crate::keys::Keys;
use crate::limiter::RedisRateLimiter;

/// How long snapshots, idempotency keys and the change stream outlive their last write, so that
/// Redis does not grow forever; the database keeps jobs for good.
const TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Changes the stream keeps for replicas whose feed lost its connection and comes back.
const STREAM_LENGTH: usize = 16 * 1024;
/// Jobs up to this size as JSON travel in the change stream; larger ones are named there and read
/// from their hash, so the stream holds at most `STREAM_LENGTH` times this (64 MiB), not that many
/// megabyte payloads.
const STREAM_INLINE_BYTES: usize = 4 * 1024;
/// A command waits at most this long for a connection and as long again for its answer: with Redis
/// gone, callers had better fall back to the database soon than wait.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

static PUT_JOB: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/put_job.lua")));
static HOLD_LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/hold_lease.lua")));
static RELEASE_LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/release_lease.lua")));
static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/admit.lua")));

/// The cache on Redis, shared by every api replica and worker process: the compare-and-set point of
/// job changes and the change feed between them. Clones share connections and feed.
#[derive(Clone)]
pub struct RedisCache {
    commands: ConnectionManager,
    keys: Keys,
    feed: Arc<ChangeFeed>,
}

impl RedisCache {
    /// Connects to Redis at `url`, with every key under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisCache, StoreError> {
        let client = Client::open(url).map_err(|error| {
            StoreError::Config(format!(
                "CONVEYOR_CACHE_URL is not a usable Redis URL: {error}"
            ))
        })?;
        // The address only: the URL may hold a password.
        let server = client.get_connection_info().addr().to_string();
        let unreachable = |error: RedisError| {
            StoreError::Cache(format!("cannot reach Redis at {server}: {error}"))
        };
        // No retries inside a command: one connection attempt, then the error.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(0);
        let mut commands = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unreachable)?;
        let keys = Keys::new(prefix);
        let feed = ChangeFeed::start(client, &mut commands, &keys)
            .await
            .map_err(unreachable)?;
        tracing::info!(%server, prefix, "Connected to the Redis cache.");
        Ok(RedisCache {
            commands,
            keys,
            feed: Arc::new(feed),
        })
    }
}

impl RedisCache {
    /// A rate limiter on the same connection and under the same prefix.
    pub fn rate_limiter(&self) -> RedisRateLimiter {
        RedisRateLimiter::new(self.commands.clone(), self.keys.clone())
    }
}

pub(crate) fn failed(doing: &'static str) -> impl Fn(RedisError) -> StoreError {
    move |error| StoreError::Cache(format!("Redis failed to {doing}: {error}"))
}

#[async_trait]
impl Cache for RedisCache {
    async fn get_job(&self, id: Uuid) -> Result<Option<Job>, StoreError> {
        let json: Option<String> = self
            .commands
            .clone()
            .hget(self.keys.job(id), "json")
            .await
            .map_err(failed("read a job"))?;
        json.map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|error| StoreError::Cache(format!("job {id} in Redis is unreadable: {error}")))
    }

    async fn put_job(&self, job: &Job) -> Result<bool, StoreError> {
        let json = serde_json::to_string(job).map_err(|error| {
            StoreError::Cache(format!("job {} cannot be written as JSON: {error}", job.id))
        })?;
        let inline = json.len() <= STREAM_INLINE_BYTES;
        PUT_JOB
            .key(self.keys.job(job.id))
            .key(self.keys.changes())
            .key(self.keys.in_flight(&job.tenant))
            .arg(job.version)
            .arg(u8::from(job.status.is_terminal()))
            .arg(json)
            .arg(TTL.as_millis())
            .arg(STREAM_LENGTH)
            .arg(job.id.to_string())
            .arg(u8::from(inline))
            .invoke_async(&mut self.commands.clone())
            .await
            .map_err(failed("keep a job"))
    }

    async fn claim_idempotency_key(
        &self,
        tenant: &str,
        key: &str,
        claim: IdempotencyClaim,
    ) -> Result<Option<IdempotencyClaim>, StoreError> {
        let redis_key = self.keys.idempotency(tenant, key);
        let earlier: Option<String> = redis::cmd("SET")
            .arg(&redis_key)
            .arg(claims::encode(&claim))
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(TTL.as_millis())
            .query_async(&mut self.commands.clone())
            .await
            .map_err(failed("claim an idempotency key"))?;
        earlier
            .map(|earlier| {
                claims::decode(&earlier).ok_or_else(|| {
                    StoreError::Cache(format!("{redis_key} holds no idempotency claim"))
                })
            })
            .transpose()
    }

    async fn release_idempotency_key(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        self.commands
            .clone()
            .del(self.keys.idempotency(tenant, key))
            .await
            .map_err(failed("release an idempotency key"))
    }

    async fn admit_in_flight(
        &self,
        tenant: &str,
        job: Uuid,
        max: u32,
    ) -> Result<Option<u32>, StoreError> {
        let counted: i64 = ADMIT
            .key(self.keys.in_flight(tenant))
            .arg(job.to_string())
            .arg(max)
            .invoke_async(&mut self.commands.clone())
            .await
            .map_err(failed("count an unfinished job"))?;
        Ok(u32::try_from(counted).ok().filter(|&counted| counted > 0))
    }

    async fn release_in_flight(&self, tenant: &str, job: Uuid) -> Result<(), StoreError> {
        self.commands
            .clone()
            .zrem(self.keys.in_flight(tenant), job.to_string())
            .await
            .map_err(failed("stop counting a job"))
    }

    async fn oldest_in_flight(&self, tenant: &str, count: usize) -> Result<Vec<Uuid>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = self
            .commands
            .clone()
            .zrange(self.keys.in_flight(tenant), 0, count as isize - 1)
            .await
            .map_err(failed("list unfinished jobs"))?;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }

    async fn hold_lease(&self, job: Uuid, holder: Uuid, ttl: Duration) -> Result<bool, StoreError> {
        HOLD_LEASE
            .key(self.keys.lease(job))
            .arg(holder.to_string())
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut self.commands.clone())
            .await
            .map_err(failed("hold a lease"))
    }

    async fn release_lease(&self, job: Uuid, holder: Uuid) -> Result<(), StoreError> {
        let _: u8 = RELEASE_LEASE
            .key(self.keys.lease(job))
            .arg(holder.to_string())
            .invoke_async(&mut self.commands.clone())
            .await
            .map_err(failed("release a lease"))?;
        Ok(())
    }

    async fn lease_held(&self, job: Uuid) -> Result<bool, StoreError> {
        self.commands
            .clone()
            .exists(self.keys.lease(job))
            .await
            .map_err(failed("look up a lease"))
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Job>> {
        self.feed.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        redis::cmd("PING")
            .exec_async(&mut self.commands.clone())
            .await
            .map_err(failed("answer a ping"))
    }
}
