//! Slack's rate limits as the fake Slack applies them, from docs.slack.dev "Rate limits" and
//! each method's page:
//!
//! - Limits count per method, per workspace and app (the fake is one workspace and one app).
//!   Tier 2 methods allow about 20 calls a minute, Tier 3 about 50, Tier 4 about 100, "with
//!   occasional bursts": a token bucket holding one minute's calls, refilled at that rate.
//!   Tier 1 (`apps.connections.open`) allows about one a minute, "a small amount of burst
//!   behavior is tolerated": three at once.
//! - `chat.postMessage` allows about one message a second per channel, with short bursts (a
//!   bucket of three per channel).
//! - `assistant.threads.setStatus` has a "special" limit with no published figure; the fake
//!   takes one a second per workspace with a burst of five, as slack-morphism's table does.
//! - A call past its limit is answered HTTP 429 with `{"ok":false,"error":"ratelimited"}` and
//!   `Retry-After` in whole seconds: how long until the bucket has a call again.
//!
//! The tiers are enforced while [`crate::slack::FakeSlackConfig::tiers`] is on (the default;
//! a test about something else that calls faster than Slack allows turns it off). Whether or
//! not they are, every 429 the fake answers (from a tier, or forced by a test with
//! `rate_limit`) holds its method (for `chat.postMessage`, its channel) until its Retry-After
//! has passed, and a call that arrives inside it broke the rule "no call into a running
//! Retry-After" (Slack: "wait the number of seconds given in Retry-After before retrying"): the
//! fake answers it 429 with the time left, as Slack does, and records the rule. A call that
//! arrives within [`IN_FLIGHT`] of the 429 that started the hold was on its way already; it is
//! answered 429 without a violation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long after a 429 was answered a call on the same hold counts as already sent.
pub const IN_FLIGHT: Duration = Duration::from_millis(250);

/// The rule a call into a running Retry-After breaks.
pub const RULE: &str = "slack: no call into a running Retry-After (docs.slack.dev, Rate \
                        limits: wait the seconds Retry-After gives before calling the method \
                        again)";

/// A published limit: calls a minute, and the most that may go at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Calls per minute, sustained.
    pub per_minute: u32,
    /// Calls a full bucket lets through at once.
    pub burst: u32,
    /// Counted per channel (`chat.postMessage`).
    pub per_channel: bool,
}

const fn tier(per_minute: u32) -> Limit {
    Limit {
        per_minute,
        burst: per_minute,
        per_channel: false,
    }
}

/// The published limit of `method`; `None` for methods the fake does not limit.
pub fn limit_of(method: &str) -> Option<Limit> {
    Some(match method {
        // "A small amount of burst behavior is tolerated": slack-morphism opens two Socket
        // Mode connections at start.
        "apps.connections.open" => Limit {
            per_minute: 1,
            burst: 3,
            per_channel: false,
        },
        "chat.startStream" | "chat.stopStream" | "reactions.remove" => tier(20),
        "chat.update"
        | "chat.delete"
        | "reactions.add"
        | "conversations.replies"
        | "conversations.history"
        | "conversations.info" => tier(50),
        "chat.appendStream"
        | "chat.postEphemeral"
        | "users.info"
        | "files.info"
        | "assistant.threads.setTitle"
        | "assistant.threads.setSuggestedPrompts" => tier(100),
        "chat.postMessage" => Limit {
            per_minute: 60,
            burst: 3,
            per_channel: true,
        },
        "assistant.threads.setStatus" => Limit {
            per_minute: 60,
            burst: 5,
            per_channel: false,
        },
        _ => return None,
    })
}

/// What a limit is counted for: the method, and the channel for per-channel limits.
pub type Key = (String, Option<String>);

/// The key of a call to `method` with `args`.
pub fn key_of(method: &str, args: &Value) -> Key {
    let per_channel = limit_of(method).is_some_and(|l| l.per_channel);
    let channel = per_channel
        .then(|| args["channel"].as_str().map(str::to_string))
        .flatten();
    (method.to_string(), channel)
}

/// How one call fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Let through.
    Pass,
    /// Answered 429 with `Retry-After: retry_after` (seconds).
    Limited {
        /// Whole seconds to wait.
        retry_after: u64,
        /// It came inside a Retry-After already announced, past [`IN_FLIGHT`]: the rule broken.
        violation: Option<String>,
    },
}

/// One key's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A hold a 429 announced: until when, and when the 429 was answered.
#[derive(Debug, Clone, Copy)]
struct Hold {
    until: Instant,
    announced: Instant,
}

/// The fake's rate-limit state.
#[derive(Debug, Default)]
pub struct Limits {
    buckets: HashMap<Key, Bucket>,
    holds: HashMap<Key, Hold>,
}

impl Limits {
    /// Decides a call to `key` arriving at `now`. `forced`: a test asked for a 429 with this
    /// Retry-After. `tiers`: the published limits are enforced.
    pub fn admit(&mut self, key: &Key, forced: Option<u64>, tiers: bool, now: Instant) -> Gate {
        if let Some(hold) = self.holds.get(key).copied().filter(|h| h.until > now) {
            let left = hold.until.duration_since(now);
            let violation = (now.duration_since(hold.announced) > IN_FLIGHT).then(|| {
                format!(
                    "{RULE}; {:.2} s of {}'s Retry-After were left",
                    left.as_secs_f64(),
                    key.0
                )
            });
            return Gate::Limited {
                retry_after: whole_seconds(left),
                violation,
            };
        }
        let retry_after = forced.or_else(|| if tiers { self.take(key, now) } else { None });
        match retry_after {
            None => Gate::Pass,
            Some(secs) => {
                self.holds.insert(
                    key.clone(),
                    Hold {
                        until: now + Duration::from_secs(secs),
                        announced: now,
                    },
                );
                Gate::Limited {
                    retry_after: secs,
                    violation: None,
                }
            }
        }
    }

    /// Takes a call from `key`'s bucket: `None` when there was one, else the Retry-After.
    fn take(&mut self, key: &Key, now: Instant) -> Option<u64> {
        let limit = limit_of(&key.0)?;
        let burst = f64::from(limit.burst.max(1));
        let per_sec = f64::from(limit.per_minute.max(1)) / 60.0;
        let bucket = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            None
        } else {
            let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec);
            Some(whole_seconds(wait))
        }
    }
}

/// `d` rounded up to whole seconds, at least one (Slack's Retry-After is an integer).
fn whole_seconds(d: Duration) -> u64 {
    (d.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(method: &str) -> Key {
        (method.to_string(), None)
    }

    #[test]
    fn a_tier_lets_its_burst_through_then_says_when_to_come_back() {
        let mut l = Limits::default();
        let t = Instant::now();
        let k = key("chat.startStream");
        for _ in 0..20 {
            assert_eq!(l.admit(&k, None, true, t), Gate::Pass);
        }
        assert_eq!(
            l.admit(&k, None, true, t),
            Gate::Limited {
                retry_after: 3,
                violation: None
            },
            "20 a minute: one call back every 3 s"
        );
        // Another method has its own bucket; tiers off lets everything through.
        assert_eq!(l.admit(&key("chat.update"), None, true, t), Gate::Pass);
        assert_eq!(l.admit(&key("chat.stopStream"), None, false, t), Gate::Pass);
    }

    #[test]
    fn a_call_into_a_running_retry_after_is_a_violation_after_the_in_flight_grace() {
        let mut l = Limits::default();
        let t = Instant::now();
        let k = key("chat.update");
        assert!(matches!(
            l.admit(&k, Some(2), false, t),
            Gate::Limited {
                retry_after: 2,
                violation: None
            }
        ));
        // On its way already.
        assert!(matches!(
            l.admit(&k, None, false, t + Duration::from_millis(100)),
            Gate::Limited {
                violation: None,
                ..
            }
        ));
        match l.admit(&k, None, false, t + Duration::from_millis(1500)) {
            Gate::Limited {
                retry_after,
                violation: Some(rule),
            } => {
                assert_eq!(retry_after, 1);
                assert!(rule.starts_with(RULE), "{rule}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            l.admit(&k, None, false, t + Duration::from_secs(2)),
            Gate::Pass
        );
    }

    #[test]
    fn post_message_counts_per_channel() {
        let mut l = Limits::default();
        let t = Instant::now();
        let c1 = key_of("chat.postMessage", &json!({"channel": "C1"}));
        let c2 = key_of("chat.postMessage", &json!({"channel": "C2"}));
        assert_eq!(c1.1.as_deref(), Some("C1"));
        for _ in 0..3 {
            assert_eq!(l.admit(&c1, None, true, t), Gate::Pass);
        }
        assert!(matches!(
            l.admit(&c1, None, true, t),
            Gate::Limited { retry_after: 1, .. }
        ));
        assert_eq!(l.admit(&c2, None, true, t), Gate::Pass);
        assert_eq!(key_of("chat.update", &json!({"channel": "C1"})).1, None);
    }
}
