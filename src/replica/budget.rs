//! The rate-limit budget of replicas sharing one database: [`SharedBudget`], the contract's
//! [`RateBudget`] with its holds and allowances shared through the store, so that the
//! replicas together behave toward a platform as one bot would.
//!
//! - **Holds.** A 429 one replica receives holds its key here at once, and is written to the
//!   store ([`RateHolds`], its expiry on the database's clock) in the background. Every
//!   replica reads the store's active holds every [`POLL`] and holds them too, so no replica
//!   sends a call into a `Retry-After` another one received (global holds, [`ALL_METHODS`],
//!   included). A call already on its way when the 429 arrived, or sent within one poll of
//!   it, can still meet the hold: the platform answers it 429 again, which only extends it.
//! - **Allowances.** A platform publishes one rate per method and workspace for the whole
//!   bot. Each replica spends its share: the published rate (and its burst) divided by the
//!   number of live replicas, counted as the unexpired liveness leases
//!   ([`crate::replica::liveness_lease`], `replica:{id}`) at every poll, at least one. So
//!   together they stay within the published rate, whichever replica a conversation lands on.
//!   A burst smaller than the replica count is rounded up to one call per replica, so a
//!   method with a burst of one may briefly see more than one call at once.
//!
//! The counts live in this process; only holds and the replica count travel through the
//! store. A replica that starts or dies changes every replica's share within a poll of its
//! liveness lease appearing or expiring. When the store cannot be read, the last holds and
//! count stand (logged once until it answers again). The poller stops when the budget is
//! dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anchorbot_platform::budget::{Rate, RateBudget, RateKey, ALL_METHODS};

use crate::storage::{Leases, RateHold, RateHolds};
use anchorbot_platform::sync;

/// How often the store's holds and the live replicas are read.
pub const POLL: Duration = Duration::from_millis(250);

/// The prefix of every replica's liveness lease (the live replicas are those leases).
pub fn replica_prefix() -> String {
    crate::replica::liveness_lease("")
}

/// A rate budget shared by the replicas on one database (see the module's doc).
pub struct SharedBudget {
    state: Arc<State>,
    holds: Arc<dyn RateHolds>,
    runtime: tokio::runtime::Handle,
    poller: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SharedBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBudget")
            .field("replicas", &self.replicas())
            .finish_non_exhaustive()
    }
}

/// What this process knows: the holds (its own and every replica's), its allowances, and
/// how many replicas share them.
#[derive(Debug)]
struct State {
    /// Holds by key (as [`key_text`] writes it), until the instant given.
    holds: Mutex<HashMap<String, Instant>>,
    /// This replica's allowances by key.
    buckets: Mutex<HashMap<RateKey, Bucket>>,
    /// Live replicas, at least one.
    replicas: AtomicUsize,
}

/// One key's allowance.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Calls available at `at`.
    tokens: f64,
    /// When `tokens` was computed.
    at: Instant,
}

/// A key as stored: platform, scope, method and channel, as a JSON array (unambiguous
/// whatever the names hold).
fn key_text(key: &RateKey) -> String {
    serde_json::json!([key.platform, key.scope, key.method, key.channel]).to_string()
}

impl State {
    /// This replica's share of `rate`: calls a second and the most at once (at least one).
    fn share(&self, rate: Rate) -> (f64, f64) {
        let n = self.replicas.load(Ordering::Relaxed).max(1) as f64;
        let per_sec = f64::from(rate.per_minute.max(1)) / 60.0 / n;
        let burst = (f64::from(rate.burst.max(1)) / n).max(1.0);
        (per_sec, burst)
    }

    /// Holds `key` (by its text) until `retry_after` from now, keeping a longer hold; its
    /// allowance is gone, whatever the count said.
    fn hold(&self, key: &RateKey, text: String, retry_after: Duration) {
        let now = Instant::now();
        let until = now + retry_after;
        let mut holds = sync::lock(&self.holds);
        holds.retain(|_, u| *u > now);
        let entry = holds.entry(text).or_insert(until);
        *entry = (*entry).max(until);
        drop(holds);
        if key.method != ALL_METHODS {
            self.empty(key, until);
        }
    }

    /// Empties `key`'s allowance until `until`.
    fn empty(&self, key: &RateKey, until: Instant) {
        let mut buckets = sync::lock(&self.buckets);
        if let Some(b) = buckets.get_mut(key) {
            b.tokens = 0.0;
            b.at = b.at.max(until);
        }
    }

    /// The store's active holds (other replicas', and this one's read back), by text, since a
    /// key may belong to a platform this process has not called yet. An allowance this
    /// replica has for a held key is emptied for the hold, as for a 429 of its own. Holds
    /// that ended are forgotten.
    fn mirror(&self, active: Vec<RateHold>) {
        let now = Instant::now();
        let mut holds = sync::lock(&self.holds);
        holds.retain(|_, u| *u > now);
        for h in &active {
            let until = now + h.left;
            let entry = holds.entry(h.key.clone()).or_insert(until);
            *entry = (*entry).max(until);
        }
        if active.is_empty() {
            return;
        }
        let held: HashMap<&str, Instant> = active
            .iter()
            .filter_map(|h| Some((h.key.as_str(), *holds.get(&h.key)?)))
            .collect();
        drop(holds);
        let mut buckets = sync::lock(&self.buckets);
        for (key, b) in buckets.iter_mut() {
            if key.method == ALL_METHODS {
                continue;
            }
            if let Some(until) = held.get(key_text(key).as_str()) {
                b.tokens = 0.0;
                b.at = b.at.max(*until);
            }
        }
    }

    /// How much longer `key` (or its scope) is held.
    fn hold_left(&self, key: &RateKey, now: Instant) -> Option<Duration> {
        let own = key_text(key);
        let global = key_text(&key.global());
        let holds = sync::lock(&self.holds);
        [holds.get(&own), holds.get(&global)]
            .into_iter()
            .flatten()
            .filter(|until| **until > now)
            .max()
            .map(|until| until.duration_since(now))
    }

    /// `key`'s bucket at `now`, refilled at this replica's share of `rate`.
    fn refilled<'a>(
        buckets: &'a mut HashMap<RateKey, Bucket>,
        key: &RateKey,
        (per_sec, burst): (f64, f64),
        now: Instant,
    ) -> &'a mut Bucket {
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(burst);
        bucket.at = bucket.at.max(now);
        bucket
    }
}

impl SharedBudget {
    /// A budget whose holds go through `holds` and whose allowances are split among the live
    /// replicas in `leases`. Must be called inside a Tokio runtime: it starts its poller, which
    /// reads the store at once and then every [`POLL`], until the budget is dropped.
    pub fn start(holds: Arc<dyn RateHolds>, leases: Arc<dyn Leases>) -> Self {
        let state = Arc::new(State {
            holds: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            replicas: AtomicUsize::new(1),
        });
        let runtime = tokio::runtime::Handle::current();
        let poller = runtime.spawn(poll(state.clone(), holds.clone(), leases));
        Self {
            state,
            holds,
            runtime,
            poller,
        }
    }

    /// How many replicas share the allowances, as last counted (at least one).
    pub fn replicas(&self) -> usize {
        self.state.replicas.load(Ordering::Relaxed).max(1)
    }
}

impl Drop for SharedBudget {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl RateBudget for SharedBudget {
    fn try_spend(&self, key: &RateKey, rate: Rate) -> Result<(), Duration> {
        let now = Instant::now();
        if let Some(left) = self.state.hold_left(key, now) {
            return Err(left);
        }
        let share = self.state.share(rate);
        let mut buckets = sync::lock(&self.state.buckets);
        let bucket = State::refilled(&mut buckets, key, share, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            // A bucket emptied by a hold that has since ended refills from the hold's end.
            let from_end = bucket.at.saturating_duration_since(now);
            Err(from_end + Duration::from_secs_f64((1.0 - bucket.tokens) / share.0))
        }
    }

    fn held(&self, key: &RateKey) -> Option<Duration> {
        self.state.hold_left(key, Instant::now())
    }

    fn hold(&self, key: &RateKey, retry_after: Duration) {
        let text = key_text(key);
        self.state.hold(key, text.clone(), retry_after);
        let holds = self.holds.clone();
        self.runtime.spawn(async move {
            if let Err(e) = holds.hold(&text, retry_after).await {
                tracing::warn!(
                    key = %text,
                    error = %e,
                    "a rate-limit hold was not shared with the other replicas"
                );
            }
        });
    }

    fn available(&self, key: &RateKey, rate: Rate) -> f64 {
        let now = Instant::now();
        if self.state.hold_left(key, now).is_some() {
            return 0.0;
        }
        let share = self.state.share(rate);
        let mut buckets = sync::lock(&self.state.buckets);
        State::refilled(&mut buckets, key, share, now).tokens
    }
}

/// Mirrors the store's holds and counts the live replicas, every [`POLL`], for ever (the
/// budget aborts it when dropped).
async fn poll(state: Arc<State>, holds: Arc<dyn RateHolds>, leases: Arc<dyn Leases>) {
    let prefix = replica_prefix();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let read = async {
            let active = holds.active().await?;
            let live = leases.count(&prefix).await?;
            Ok::<_, crate::storage::StorageError>((active, live))
        };
        match read.await {
            Ok((active, live)) => {
                state.mirror(active);
                state.replicas.store(live.max(1), Ordering::Relaxed);
                if failing {
                    tracing::info!("rate-limit holds are read from the store again");
                    failing = false;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        error = %e,
                        "cannot read the shared rate-limit holds; the last ones known stand"
                    );
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Location, Storage};

    async fn store(dir: &std::path::Path) -> Storage {
        Location::Sled(dir.to_path_buf()).open().await.unwrap()
    }

    fn start(s: &Storage) -> SharedBudget {
        SharedBudget::start(s.holds.clone(), s.leases.clone())
    }

    fn key(method: &str) -> RateKey {
        RateKey::new("slack", "T1", method)
    }

    /// Waits (up to 2 s) until `check` holds.
    async fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !check() {
            assert!(Instant::now() < deadline, "{what} within 2 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_hold_is_written_to_the_store_and_read_by_a_second_budget() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path()).await;
        let (a, b) = (start(&s), start(&s));
        let rate = Rate::per_minute(50);
        a.hold(&key("chat.update"), Duration::from_secs(30));
        assert!(a.try_spend(&key("chat.update"), rate).is_err(), "at once");
        eventually("the other budget holds it", || {
            b.held(&key("chat.update")).is_some()
        })
        .await;
        let stored = s.holds.active().await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].key, key_text(&key("chat.update")));
        assert!(b.try_spend(&key("chat.update"), rate).unwrap_err() > Duration::from_secs(25));
        assert_eq!(b.available(&key("chat.update"), rate), 0.0);
        // Other methods and workspaces are free.
        b.try_spend(&key("chat.postMessage"), rate).unwrap();
        b.try_spend(&RateKey::new("slack", "T2", "chat.update"), rate)
            .unwrap();
    }

    #[tokio::test]
    async fn a_global_hold_reaches_every_method_of_its_scope_on_the_other_budget() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path()).await;
        let (a, b) = (start(&s), start(&s));
        let bucket = RateKey::new("discord", "app", "bucket-a");
        a.hold(&bucket.global(), Duration::from_secs(5));
        eventually("the other budget holds the scope", || {
            b.held(&RateKey::new("discord", "app", "bucket-b"))
                .is_some()
        })
        .await;
        assert!(b
            .held(&RateKey::new("discord", "other", "bucket-b"))
            .is_none());
    }

    #[tokio::test]
    async fn a_mirrored_hold_ends_on_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path()).await;
        let (a, b) = (start(&s), start(&s));
        let k = key("reactions.add");
        let held_at = Instant::now();
        a.hold(&k, Duration::from_millis(800));
        eventually("the other budget holds it", || b.held(&k).is_some()).await;
        eventually("the hold ends", || b.held(&k).is_none()).await;
        let ended = held_at.elapsed();
        assert!(
            ended >= Duration::from_millis(750) && ended < Duration::from_millis(1800),
            "an 800 ms hold ended after {ended:?}"
        );
        b.try_spend(&k, Rate::per_minute(50)).unwrap();
    }

    #[tokio::test]
    async fn the_allowance_is_split_among_the_live_replicas() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path()).await;
        let long = Duration::from_secs(30);
        for r in ["r1", "r2"] {
            let lease = crate::replica::liveness_lease(r);
            assert!(s.leases.try_acquire(&lease, r, long).await.unwrap());
        }
        // Not a replica's lease: not counted.
        assert!(s
            .leases
            .try_acquire("role:gateway", "r1", long)
            .await
            .unwrap());
        let b = start(&s);
        eventually("two replicas counted", || b.replicas() == 2).await;
        let rate = Rate::per_minute(20);
        let mut spent = 0;
        while b.try_spend(&key("chat.startStream"), rate).is_ok() {
            spent += 1;
        }
        assert_eq!(spent, 10, "half of a burst of 20");
        let wait = b.try_spend(&key("chat.startStream"), rate).unwrap_err();
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_secs(6),
            "one call of 10 a minute refills in 6 s, waited {wait:?}"
        );
        s.leases
            .release(&crate::replica::liveness_lease("r2"), "r2")
            .await
            .unwrap();
        eventually("one replica counted", || b.replicas() == 1).await;
        assert!(b.available(&key("chat.update"), Rate::per_minute(50)) > 49.0);
    }

    #[tokio::test]
    async fn no_replica_lease_counts_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path()).await;
        let b = start(&s);
        tokio::time::sleep(POLL * 2).await;
        assert_eq!(b.replicas(), 1);
        assert_eq!(b.available(&key("chat.update"), Rate::per_minute(50)), 50.0);
    }

    #[tokio::test]
    async fn the_poller_stops_when_the_budget_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path()).await;
        let b = start(&s);
        let state = Arc::downgrade(&b.state);
        drop(b);
        eventually("the poller released the state", || {
            state.upgrade().is_none()
        })
        .await;
    }
}
