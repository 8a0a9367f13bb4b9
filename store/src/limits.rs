//! Rate limits: the generic cell rate algorithm (GCRA), kept in-process or in the cache so that
//! every api replica draws on one allowance per tenant.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::ops::compute::Op;
use moka::sync::Cache as Moka;

/// A sustained rate with a burst: up to `burst` requests at once, then one per `1/per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_second: f64,
    burst: u32,
}

impl Rate {
    /// `None` unless `per_second` is positive and finite and `burst` at least 1.
    pub fn new(per_second: f64, burst: u32) -> Option<Rate> {
        (per_second.is_finite() && per_second > 0.0 && burst >= 1)
            .then_some(Rate { per_second, burst })
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The time one request uses up, in microseconds.
    pub fn interval_micros(&self) -> u64 {
        ((1_000_000.0 / self.per_second).round() as u64).max(1)
    }

    /// How far ahead of the present the allowance may be spent.
    pub fn tolerance_micros(&self) -> u64 {
        self.interval_micros() * u64::from(self.burst)
    }

    /// How long a full burst takes to come back: the window of `RateLimit-Policy`.
    pub fn window(&self) -> Duration {
        Duration::from_micros(self.tolerance_micros())
    }
}

/// What the limiter said of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Requests that could still be made at once.
    pub remaining: u32,
    /// Until the allowance is whole again.
    pub reset: Duration,
    /// Until a refused request would be allowed; zero when allowed.
    pub retry_after: Duration,
}

/// One GCRA step. `tat` is the theoretical arrival time kept for the key (None when unknown),
/// `now` the present, both in microseconds on one clock. Returns the verdict and, when allowed,
/// the new `tat` to keep. `store/redis/src/lua/take.lua` is the same step in Lua.
pub fn gcra(tat: Option<u64>, now: u64, rate: Rate) -> (Verdict, Option<u64>) {
    let interval = rate.interval_micros();
    let tolerance = rate.tolerance_micros();
    let tat = tat.unwrap_or(now).max(now);
    let next = tat + interval;
    let ahead = next - now;
    if ahead > tolerance {
        let verdict = Verdict {
            allowed: false,
            remaining: 0,
            reset: Duration::from_micros(tat - now),
            retry_after: Duration::from_micros(ahead - tolerance),
        };
        return (verdict, None);
    }
    let verdict = Verdict {
        allowed: true,
        remaining: u32::try_from((tolerance - ahead) / interval).unwrap_or(u32::MAX),
        reset: Duration::from_micros(ahead),
        retry_after: Duration::ZERO,
    };
    (verdict, Some(next))
}

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes one request from the allowance of `key` at `rate`. Always answers: a limiter whose
    /// shared state cannot be reached limits on its own meanwhile.
    async fn take(&self, key: &str, rate: Rate) -> Verdict;
}

/// Keys not used for this long are dropped; any allowance is whole again long before.
const IDLE_KEY_TTL: Duration = Duration::from_secs(60 * 60);
const MAX_KEYS: u64 = 1_000_000;

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The limiter of one process: the embedded default's, and what a replica falls back to while
/// the shared one cannot answer.
#[derive(Clone)]
pub struct MemoryRateLimiter {
    arrivals: Arc<Moka<String, u64>>,
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        MemoryRateLimiter::new()
    }
}

impl MemoryRateLimiter {
    pub fn new() -> MemoryRateLimiter {
        MemoryRateLimiter {
            arrivals: Arc::new(
                Moka::builder()
                    .max_capacity(MAX_KEYS)
                    .time_to_idle(IDLE_KEY_TTL)
                    .build(),
            ),
        }
    }

    fn take_now(&self, key: &str, rate: Rate) -> Verdict {
        let now = EPOCH.elapsed().as_micros() as u64;
        let mut verdict = None;
        self.arrivals.entry_by_ref(key).and_compute_with(|current| {
            let (decided, next) = gcra(current.map(|entry| entry.into_value()), now, rate);
            verdict = Some(decided);
            match next {
                Some(next) => Op::Put(next),
                None => Op::Nop,
            }
        });
        verdict.expect("the compute ran")
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn take(&self, key: &str, rate: Rate) -> Verdict {
        self.take_now(key, rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: f64, burst: u32) -> Rate {
        Rate::new(per_second, burst).unwrap()
    }

    #[test]
    fn a_burst_is_allowed_at_once_and_the_next_request_waits_one_interval() {
        let rate = rate(10.0, 3);
        let mut tat = None;
        for remaining in [2, 1, 0] {
            let (verdict, next) = gcra(tat, 1_000_000, rate);
            assert!(verdict.allowed);
            assert_eq!(verdict.remaining, remaining);
            tat = next;
        }
        let (refused, next) = gcra(tat, 1_000_000, rate);
        assert!(!refused.allowed);
        assert_eq!(next, None);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert_eq!(refused.reset, Duration::from_millis(300));
    }

    #[test]
    fn the_allowance_comes_back_at_the_rate() {
        let rate = rate(10.0, 1);
        let (_, tat) = gcra(None, 0, rate);
        assert!(!gcra(tat, 50_000, rate).0.allowed);
        let (verdict, _) = gcra(tat, 100_000, rate);
        assert!(verdict.allowed);
    }

    #[test]
    fn over_a_second_a_key_gets_its_burst_plus_its_rate() {
        let rate = rate(1_000.0, 5);
        let mut tat = None;
        let mut allowed = 0;
        // One request every 100 µs for a second: ten times the rate.
        for now in (0..1_000_000).step_by(100) {
            let (verdict, next) = gcra(tat, now, rate);
            if verdict.allowed {
                allowed += 1;
                tat = next;
            }
        }
        assert!((1_000..=1_005).contains(&allowed), "{allowed} allowed");
    }

    #[test]
    fn each_key_has_an_allowance_of_its_own() {
        let limiter = MemoryRateLimiter::new();
        let rate = rate(0.001, 1);
        assert!(limiter.take_now("a", rate).allowed);
        assert!(!limiter.take_now("a", rate).allowed);
        assert!(limiter.take_now("b", rate).allowed);
    }

    #[test]
    fn rates_that_cannot_work_are_refused() {
        assert!(Rate::new(0.0, 1).is_none());
        assert!(Rate::new(f64::NAN, 1).is_none());
        assert!(Rate::new(1.0, 0).is_none());
    }
}
