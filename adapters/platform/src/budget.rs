//! The rate-limit budget both adapters spend: per platform method (or Discord bucket) and
//! workspace, shared by every conversation.
//!
//! A platform limits each method per workspace and app (Slack's tiers) or per bucket (Discord's
//! `X-RateLimit-Bucket`). Two things follow, and this module holds both:
//! - **Allowances.** Each key has a token bucket refilled at the platform's published rate, so
//!   an adapter can tell before a call whether it is likely to be throttled, and choose a
//!   cheaper path (coalesce writes, fall back from streaming) instead of waiting.
//! - **Holds.** A 429 holds its key for everyone until its `Retry-After` has passed; a global
//!   429 holds every key of the scope. No call is sent into a known hold.
//!
//! The budget sits behind the [`RateBudget`] trait so that a shared store can later hold it
//! for several replicas; [`LocalBudget`] keeps it in this process.

use crate::sync;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The method name that stands for every method of a scope: a hold on it (a global 429) holds
/// them all.
pub const ALL_METHODS: &str = "*";

/// What a call is charged to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateKey {
    /// The platform (`slack`, `discord`).
    pub platform: &'static str,
    /// The workspace, team or application the limit is counted for.
    pub scope: String,
    /// The method (`chat.update`), route bucket (`X-RateLimit-Bucket`), or [`ALL_METHODS`].
    pub method: String,
    /// The channel, for limits counted per channel (Slack's `chat.postMessage`).
    pub channel: Option<String>,
}

impl RateKey {
    /// A key for `method` in `scope`.
    pub fn new(platform: &'static str, scope: &str, method: &str) -> Self {
        Self {
            platform,
            scope: scope.to_string(),
            method: method.to_string(),
            channel: None,
        }
    }

    /// The same key, counted per `channel`.
    pub fn in_channel(mut self, channel: &str) -> Self {
        self.channel = Some(channel.to_string());
        self
    }

    /// The key that holds every method of this key's scope.
    pub fn global(&self) -> Self {
        Self {
            platform: self.platform,
            scope: self.scope.clone(),
            method: ALL_METHODS.to_string(),
            channel: None,
        }
    }
}

/// A published rate: so many calls a minute, with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Calls per minute, sustained.
    pub per_minute: u32,
    /// Calls that may go at once from a full allowance.
    pub burst: u32,
}

impl Rate {
    /// `per_minute` calls a minute, the whole minute's worth available at once (Slack's tiers
    /// count calls per minute).
    pub const fn per_minute(per_minute: u32) -> Self {
        Self {
            per_minute,
            burst: per_minute,
        }
    }

    /// The same rate with a different burst.
    pub const fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// The time one call's allowance takes to refill.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(60.0 / f64::from(self.per_minute.max(1)))
    }
}

/// A rate-limit budget shared by every conversation of a platform (and, with a shared store,
/// by every replica).
pub trait RateBudget: Send + Sync + 'static {
    /// Takes one call from `key`'s allowance at `rate`. `Err(wait)`: the key is held by a 429,
    /// or its allowance is spent, for `wait` more; nothing was taken.
    fn try_spend(&self, key: &RateKey, rate: Rate) -> Result<(), Duration>;

    /// How much longer a 429 holds `key` (or its whole scope); `None` when it is not held.
    fn held(&self, key: &RateKey) -> Option<Duration>;

    /// Records a 429: `key` is held for everyone for `retry_after`. A key whose method is
    /// [`ALL_METHODS`] holds every method of its scope.
    fn hold(&self, key: &RateKey, retry_after: Duration);

    /// The calls `key` could make now at `rate` (0 while it is held), for choosing between a
    /// call now and a cheaper path.
    fn available(&self, key: &RateKey, rate: Rate) -> f64;

    /// Counts `waited` spent waiting on `key` (for `/metrics`).
    fn waited(&self, key: &RateKey, waited: Duration) {
        crate::metrics::rate_limit_seconds(key.platform, &key.method, waited);
    }
}

/// Waits until `key` may be called at `rate` and takes the call, giving up when that would
/// take longer than `max_wait` (then `Err` says how long it would have been, and nothing was
/// taken). The time waited is counted.
pub async fn spend(
    budget: &dyn RateBudget,
    key: &RateKey,
    rate: Rate,
    max_wait: Duration,
) -> Result<(), Duration> {
    let started = Instant::now();
    loop {
        match budget.try_spend(key, rate) {
            Ok(()) => {
                let waited = started.elapsed();
                if !waited.is_zero() {
                    budget.waited(key, waited);
                }
                return Ok(());
            }
            Err(wait) => {
                let waited = started.elapsed();
                if waited + wait > max_wait {
                    if !waited.is_zero() {
                        budget.waited(key, waited);
                    }
                    return Err(wait);
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Waits out a 429 hold on `key` (or its scope), at most `max_wait`; `Err` with the time left
/// when the hold outlasts it. Takes no allowance: for calls that only must not go into a hold.
pub async fn wait_hold(
    budget: &dyn RateBudget,
    key: &RateKey,
    max_wait: Duration,
) -> Result<(), Duration> {
    let started = Instant::now();
    while let Some(left) = budget.held(key) {
        if started.elapsed() + left > max_wait {
            return Err(left);
        }
        tokio::time::sleep(left).await;
    }
    let waited = started.elapsed();
    if !waited.is_zero() {
        budget.waited(key, waited);
    }
    Ok(())
}

/// One key's state.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Calls available at `at`.
    tokens: f64,
    /// When `tokens` was computed.
    at: Instant,
}

/// The budget in this process's memory.
#[derive(Debug, Default)]
pub struct LocalBudget {
    /// Allowances by key.
    buckets: Mutex<HashMap<RateKey, Bucket>>,
    /// 429 holds by key, until the instant given.
    holds: Mutex<HashMap<RateKey, Instant>>,
}

impl LocalBudget {
    /// An empty budget: every key starts with its full burst.
    pub fn new() -> Self {
        Self::default()
    }

    fn refill(bucket: &mut Bucket, rate: Rate, now: Instant) {
        let per_sec = f64::from(rate.per_minute) / 60.0;
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(f64::from(rate.burst.max(1)));
        bucket.at = now;
    }

    fn hold_left(&self, key: &RateKey, now: Instant) -> Option<Duration> {
        let mut holds = sync::lock(&self.holds);
        holds.retain(|_, until| *until > now);
        let own = holds.get(key).copied();
        let global = holds.get(&key.global()).copied();
        own.into_iter()
            .chain(global)
            .max()
            .map(|until| until.saturating_duration_since(now))
    }
}

impl RateBudget for LocalBudget {
    fn try_spend(&self, key: &RateKey, rate: Rate) -> Result<(), Duration> {
        let now = Instant::now();
        if let Some(left) = self.hold_left(key, now) {
            return Err(left);
        }
        let mut buckets = sync::lock(&self.buckets);
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: f64::from(rate.burst.max(1)),
            at: now,
        });
        Self::refill(bucket, rate, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let per_sec = f64::from(rate.per_minute.max(1)) / 60.0;
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec))
        }
    }

    fn held(&self, key: &RateKey) -> Option<Duration> {
        self.hold_left(key, Instant::now())
    }

    fn hold(&self, key: &RateKey, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut holds = sync::lock(&self.holds);
        let entry = holds.entry(key.clone()).or_insert(until);
        *entry = (*entry).max(until);
        drop(holds);
        // A 429 means the allowance is gone, whatever our count said.
        if key.method != ALL_METHODS {
            let mut buckets = sync::lock(&self.buckets);
            if let Some(b) = buckets.get_mut(key) {
                b.tokens = 0.0;
                b.at = until;
            }
        }
    }

    fn available(&self, key: &RateKey, rate: Rate) -> f64 {
        let now = Instant::now();
        if self.hold_left(key, now).is_some() {
            return 0.0;
        }
        let mut buckets = sync::lock(&self.buckets);
        match buckets.get_mut(key) {
            Some(bucket) => {
                Self::refill(bucket, rate, now);
                bucket.tokens
            }
            None => f64::from(rate.burst.max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(method: &str) -> RateKey {
        RateKey::new("slack", "T1", method)
    }

    #[test]
    fn an_allowance_is_spent_and_then_says_how_long_to_wait() {
        let b = LocalBudget::new();
        let rate = Rate::per_minute(20);
        for _ in 0..20 {
            b.try_spend(&key("chat.startStream"), rate).unwrap();
        }
        let wait = b.try_spend(&key("chat.startStream"), rate).unwrap_err();
        assert!(
            wait > Duration::from_secs(2) && wait <= Duration::from_secs(3),
            "one call of 20 a minute refills in 3 s, waited {wait:?}"
        );
        // Another method, or the same method in another workspace, has its own allowance.
        b.try_spend(&key("chat.update"), rate).unwrap();
        b.try_spend(&RateKey::new("slack", "T2", "chat.startStream"), rate)
            .unwrap();
        assert!(b.available(&key("chat.startStream"), rate) < 1.0);
    }

    #[test]
    fn a_hold_stops_every_caller_of_its_key_until_it_passes() {
        let b = LocalBudget::new();
        let rate = Rate::per_minute(100);
        b.hold(&key("chat.update"), Duration::from_secs(30));
        let wait = b.try_spend(&key("chat.update"), rate).unwrap_err();
        assert!(wait > Duration::from_secs(29));
        assert!(b.held(&key("chat.update")).is_some());
        assert_eq!(b.available(&key("chat.update"), rate), 0.0);
        assert!(b.held(&key("chat.postMessage")).is_none());
        // Per channel: one channel's hold is not another's.
        let c1 = key("chat.postMessage").in_channel("C1");
        b.hold(&c1, Duration::from_secs(5));
        assert!(b.held(&c1).is_some());
        assert!(b.held(&key("chat.postMessage").in_channel("C2")).is_none());
    }

    #[test]
    fn a_global_hold_holds_every_method_of_the_scope() {
        let b = LocalBudget::new();
        let k = RateKey::new("discord", "app", "bucket-a");
        b.hold(&k.global(), Duration::from_secs(2));
        assert!(b.held(&k).is_some());
        assert!(b
            .try_spend(
                &RateKey::new("discord", "app", "bucket-b"),
                Rate::per_minute(50)
            )
            .is_err());
        assert!(b
            .held(&RateKey::new("discord", "other", "bucket-a"))
            .is_none());
    }

    #[tokio::test]
    async fn spend_waits_for_the_allowance_or_gives_up() {
        let b = LocalBudget::new();
        // 600 a minute: one call every 100 ms, no burst beyond one.
        let rate = Rate::per_minute(600).with_burst(1);
        let k = key("chat.appendStream");
        spend(&b, &k, rate, Duration::ZERO).await.unwrap();
        let t = Instant::now();
        spend(&b, &k, rate, Duration::from_secs(1)).await.unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(80),
            "{:?}",
            t.elapsed()
        );
        assert!(spend(&b, &k, rate, Duration::from_millis(10))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn wait_hold_waits_out_a_short_hold_and_refuses_a_long_one() {
        let b = LocalBudget::new();
        let k = key("reactions.remove");
        b.hold(&k, Duration::from_millis(50));
        let t = Instant::now();
        wait_hold(&b, &k, Duration::from_secs(1)).await.unwrap();
        assert!(t.elapsed() >= Duration::from_millis(40));
        b.hold(&k, Duration::from_secs(60));
        assert!(wait_hold(&b, &k, Duration::from_secs(1)).await.is_err());
    }
}
