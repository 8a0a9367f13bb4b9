use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use conveyor_store::{MemoryRateLimiter, Rate, RateLimiter, StoreError, Verdict};
use redis::Script;
use redis::aio::ConnectionManager;

use crate::cache::failed;
use crate::keys::Keys;

static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/take.lua")));

/// Rate limits that every api replica shares, one round trip per request. While Redis cannot
/// answer, each replica limits on its own: a tenant may then get up to one allowance per
/// replica, which beats refusing everyone or limiting no one.
#[derive(Clone)]
pub struct RedisRateLimiter {
    commands: ConnectionManager,
    keys: Keys,
    local: MemoryRateLimiter,
    degraded: Arc<AtomicBool>,
}

impl RedisRateLimiter {
    pub(crate) fn new(commands: ConnectionManager, keys: Keys) -> RedisRateLimiter {
        RedisRateLimiter {
            commands,
            keys,
            local: MemoryRateLimiter::new(),
            degraded: Arc::default(),
        }
    }

    async fn take_shared(&self, key: &str, rate: Rate) -> Result<Verdict, StoreError> {
        let (allowed, remaining, reset, retry_after): (u8, u32, u64, u64) = TAKE
            .key(self.keys.allowance(key))
            .arg(rate.interval_micros())
            .arg(rate.tolerance_micros())
            .invoke_async(&mut self.commands.clone())
            .await
            .map_err(failed("take from a rate limit"))?;
        Ok(Verdict {
            allowed: allowed == 1,
            remaining,
            reset: Duration::from_micros(reset),
            retry_after: Duration::from_micros(retry_after),
        })
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn take(&self, key: &str, rate: Rate) -> Verdict {
        match self.take_shared(key, rate).await {
            Ok(verdict) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis answers again; rate limits are shared again.");
                }
                verdict
            }
            Err(error) => {
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "Redis cannot answer; each replica limits rates on its own until it is back.");
                }
                self.local.take(key, rate).await
            }
        }
    }
}
