//! How often each streamed reply writes, so that all the replies in flight together spend the
//! workspace's allowance for their write method (`chat.appendStream` for native streams,
//! `chat.update` for posted answers) before it runs out, not after.
//!
//! Every reply gets an equal share of what intermediate writes may spend in the next minute:
//! a part of the method's rate ([`WRITE_SHARE`]), plus what is left in the allowance beyond
//! one write for each reply (minus what is missing, when less is left). With `n` replies
//! writing, each writes every `n × 60 s / (rate × WRITE_SHARE + left − n)`. One reply alone
//! writes about once a second; many at once, or a spent allowance, stretch the interval. A busy
//! minute therefore sends fewer, larger writes: each carries all the text that arrived since
//! the last. The rest of the rate is left for what cannot wait: the first text of each answer,
//! final writes, and stops.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anchorbot_platform::budget::Rate;
use anchorbot_platform::sync;

/// The fewest seconds between two writes of one reply, however idle the workspace: Slack's
/// advice for agents is an update every few seconds at most, and one a second keeps a
/// streamed answer lively.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// The most: past it a reply would look stalled.
pub const MAX_WRITE_INTERVAL: Duration = Duration::from_secs(30);
/// The part of a method's rate that intermediate writes share.
pub const WRITE_SHARE: f64 = 0.75;
/// A reply that has not written for this long no longer counts as writing (its answer ended
/// without [`Writers::done`], or it is waiting on the model).
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(45);

/// The replies writing lately, per write method.
#[derive(Debug, Default)]
pub struct Writers {
    /// Last write by (method, message id).
    last: Mutex<HashMap<(String, String), Instant>>,
}

impl Writers {
    /// Records that `message` was written with `method`.
    pub fn wrote(&self, method: &str, message: &str) {
        let now = Instant::now();
        let mut last = sync::lock(&self.last);
        last.retain(|_, at| now.duration_since(*at) < ACTIVE_WINDOW);
        last.insert((method.to_string(), message.to_string()), now);
    }

    /// Records that `message` will not be written again (its reply finished).
    pub fn done(&self, message: &str) {
        let mut last = sync::lock(&self.last);
        last.retain(|(_, m), _| m != message);
    }

    /// How many replies wrote with `method` within [`ACTIVE_WINDOW`].
    pub fn active(&self, method: &str) -> usize {
        let now = Instant::now();
        let last = sync::lock(&self.last);
        last.iter()
            .filter(|((m, _), at)| m == method && now.duration_since(**at) < ACTIVE_WINDOW)
            .count()
    }
}

/// The interval between two writes of each of `writers` replies sharing `rate`, with
/// `available` calls left in the allowance now.
pub fn interval(writers: usize, rate: Rate, available: f64) -> Duration {
    let n = writers.max(1) as f64;
    let refill = f64::from(rate.per_minute.max(1)) * WRITE_SHARE;
    // Writes the replies may spend in the next minute: the refill, and the allowance left
    // beyond (or short of) one write each. Never less than a quarter of the refill.
    let per_minute = (refill + available - n).max(refill / 4.0);
    let secs = 60.0 * n / per_minute;
    Duration::from_secs_f64(secs).clamp(MIN_WRITE_INTERVAL, MAX_WRITE_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_grows_with_the_replies_in_flight_and_a_spent_allowance() {
        let update = Rate::per_minute(50);
        let secs = |d: Duration| d.as_secs_f64();
        // Alone, with the allowance full: as often as the floor allows.
        assert_eq!(interval(1, update, 45.0), MIN_WRITE_INTERVAL);
        // Alone with the allowance spent: the refill's pace (37.5 a minute).
        assert!((secs(interval(1, update, 0.0)) - 60.0 / 36.5).abs() < 0.01);
        // Ten answers posted at once with the allowance full: 72.5 writes to share in the next
        // minute, one each 8.3 s; with it spent, 27.5, one each 22 s.
        assert!((secs(interval(10, update, 45.0)) - 600.0 / 72.5).abs() < 0.01);
        assert!((secs(interval(10, update, 0.0)) - 600.0 / 27.5).abs() < 0.01);
        // Twenty with it spent: capped.
        assert_eq!(interval(20, update, 0.0), MAX_WRITE_INTERVAL);
        // Native appends (Tier 4) go faster than updates under the same load.
        assert!(interval(10, Rate::per_minute(100), 90.0) < interval(10, update, 45.0));
        // More replies, or less allowance left, never shorten it.
        for n in 1..40 {
            for left in [0.0, 5.0, 20.0, 45.0] {
                assert!(interval(n + 1, update, left) >= interval(n, update, left));
                assert!(interval(n, update, left) >= interval(n, update, left + 5.0));
            }
        }
    }

    #[test]
    fn writers_count_per_method_until_done() {
        let w = Writers::default();
        w.wrote("chat.update", "C1:1.0");
        w.wrote("chat.update", "C1:2.0");
        w.wrote("chat.update", "C1:2.0");
        w.wrote("chat.appendStream", "C2:3.0");
        assert_eq!(w.active("chat.update"), 2);
        assert_eq!(w.active("chat.appendStream"), 1);
        w.done("C1:1.0");
        assert_eq!(w.active("chat.update"), 1);
    }
}
