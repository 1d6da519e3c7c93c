//! Discord's rate limits as the fake Discord applies them, from Discord's "Rate Limits" page:
//!
//! - Every route belongs to a bucket, named in `X-RateLimit-Bucket`; several routes may share
//!   one. A bucket is counted per top-level resource (the major parameter: the channel, guild,
//!   or webhook and its token). Every answer carries `X-RateLimit-Limit`, `-Remaining`,
//!   `-Reset` and `-Reset-After`.
//! - A call past the bucket's limit is answered 429 with `retry_after` (seconds) in the body,
//!   `Retry-After` and `X-RateLimit-Scope`, and the bucket is held until then.
//! - A global 429 (`"global": true`, `X-RateLimit-Global`, scope `global`) holds every route of
//!   the bot, except the interaction endpoints, which the global limit does not bind.
//!
//! Tests can force 429s on a route, or a global one, on demand. A call that arrives while a
//! Retry-After the fake announced is still running broke the rule "no call into a running
//! Retry-After": the fake answers it 429, as Discord does, and reports it as a violation. A
//! call that arrives within [`IN_FLIGHT`] of the 429 that started the hold is taken to have
//! been on its way already, and is answered 429 without a violation.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long after a 429 was answered a call on the same hold counts as already sent.
pub const IN_FLIGHT: Duration = Duration::from_millis(250);

/// How one call fared against the limits.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Let through; the headers to send.
    Pass(Headers),
    /// Answered 429.
    Limited {
        /// Seconds to wait.
        retry_after: f64,
        /// A global 429.
        global: bool,
        /// The headers to send.
        headers: Headers,
        /// The rule broken when the call came inside a Retry-After already announced.
        violation: Option<String>,
    },
}

/// Rate-limit headers, name and value.
pub type Headers = Vec<(&'static str, String)>;

/// One bucket's window for one major parameter.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    used: u32,
}

/// A hold a 429 announced: until when, and when the 429 was answered.
#[derive(Debug, Clone, Copy)]
struct Hold {
    until: Instant,
    announced: Instant,
}

/// The fake's rate-limit state.
#[derive(Debug)]
pub struct Limits {
    /// Calls a bucket takes per window, per major parameter.
    pub limit: u32,
    /// The window.
    pub window: Duration,
    /// Routes whose bucket is another route's.
    shared: HashMap<String, String>,
    windows: HashMap<(String, String), Window>,
    holds: HashMap<(String, String), Hold>,
    global: Option<Hold>,
    /// A global 429 armed for the next call that the global limit binds: its Retry-After.
    global_armed: Option<f64>,
    /// Forced 429s: route → (calls left, seconds).
    forced: HashMap<String, (usize, f64)>,
}

impl Limits {
    /// Limits of `limit` calls per `window` for every bucket.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            shared: HashMap::new(),
            windows: HashMap::new(),
            holds: HashMap::new(),
            global: None,
            global_armed: None,
            forced: HashMap::new(),
        }
    }

    /// Makes every route in `routes` share the first one's bucket.
    pub fn share(&mut self, routes: &[&str]) {
        if let Some((first, rest)) = routes.split_first() {
            let owner = self.owner(first);
            for r in rest {
                self.shared.insert((*r).to_string(), owner.clone());
            }
        }
    }

    /// Forces the next `n` calls of `route` to be answered 429 with `retry_after` seconds.
    pub fn force(&mut self, route: &str, n: usize, retry_after: f64) {
        self.forced.insert(route.to_string(), (n, retry_after));
    }

    /// Answers the next call that the global limit binds with a global 429 of `retry_after`
    /// seconds.
    pub fn force_global(&mut self, retry_after: f64) {
        self.global_armed = Some(retry_after);
    }

    /// The route whose bucket `route` uses.
    fn owner(&self, route: &str) -> String {
        self.shared
            .get(route)
            .cloned()
            .unwrap_or_else(|| route.to_string())
    }

    /// The `X-RateLimit-Bucket` of `route`: a stable hash of the route that owns its bucket.
    pub fn bucket(&self, route: &str) -> String {
        let owner = self.owner(route);
        let h = owner.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{h:016x}")
    }

    /// Admits one call of `route` (a template) on `major` at `now`. `interaction`: the route is
    /// an interaction endpoint, which the global limit does not bind.
    pub fn admit(
        &mut self,
        route: &str,
        major: &str,
        interaction: bool,
        now: Instant,
    ) -> Admission {
        let bucket = self.bucket(route);
        let key = (bucket.clone(), major.to_string());
        if !interaction {
            if let Some(g) = self.global.filter(|g| g.until > now) {
                let late = now.saturating_duration_since(g.announced) > IN_FLIGHT;
                let retry_after = secs(g.until - now);
                return Admission::Limited {
                    retry_after,
                    global: true,
                    headers: global_headers(retry_after),
                    violation: late.then(|| {
                        format!(
                            "discord: no call while a global 429's Retry-After runs ({:.2} s \
                             left; Discord's \"Rate Limits\": a global rate limit holds every \
                             route)",
                            retry_after
                        )
                    }),
                };
            }
            if let Some(retry_after) = self.global_armed.take() {
                self.global = Some(Hold {
                    until: now + Duration::from_secs_f64(retry_after),
                    announced: now,
                });
                return Admission::Limited {
                    retry_after,
                    global: true,
                    headers: global_headers(retry_after),
                    violation: None,
                };
            }
        }
        if let Some(h) = self.holds.get(&key).copied().filter(|h| h.until > now) {
            let late = now.saturating_duration_since(h.announced) > IN_FLIGHT;
            let retry_after = secs(h.until - now);
            return Admission::Limited {
                retry_after,
                global: false,
                headers: self.limited_headers(&bucket, retry_after),
                violation: late.then(|| {
                    format!(
                        "discord: no call into bucket {bucket} while its 429's Retry-After runs \
                         ({retry_after:.2} s left; Discord's \"Rate Limits\")"
                    )
                }),
            };
        }
        let forced = match self.forced.get_mut(route) {
            Some((n, s)) if *n > 0 => {
                *n -= 1;
                Some(*s)
            }
            _ => None,
        };
        let window = self.window;
        let w = self.windows.entry(key.clone()).or_insert(Window {
            started: now,
            used: 0,
        });
        if now.saturating_duration_since(w.started) >= window {
            *w = Window {
                started: now,
                used: 0,
            };
        }
        let reset_after = window.saturating_sub(now.saturating_duration_since(w.started));
        let over = w.used >= self.limit;
        let retry_after = match (forced, over) {
            (Some(s), _) => Some(s),
            (None, true) => Some(secs(reset_after)),
            (None, false) => None,
        };
        if let Some(retry_after) = retry_after {
            self.holds.insert(
                key,
                Hold {
                    until: now + Duration::from_secs_f64(retry_after),
                    announced: now,
                },
            );
            return Admission::Limited {
                retry_after,
                global: false,
                headers: self.limited_headers(&bucket, retry_after),
                violation: None,
            };
        }
        w.used += 1;
        let remaining = self.limit - w.used;
        Admission::Pass(vec![
            ("x-ratelimit-bucket", bucket),
            ("x-ratelimit-limit", self.limit.to_string()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset", reset_at(secs(reset_after))),
            (
                "x-ratelimit-reset-after",
                format!("{:.3}", secs(reset_after)),
            ),
        ])
    }

    fn limited_headers(&self, bucket: &str, retry_after: f64) -> Headers {
        vec![
            ("retry-after", format!("{}", retry_after.ceil() as u64)),
            ("x-ratelimit-bucket", bucket.to_string()),
            ("x-ratelimit-limit", self.limit.to_string()),
            ("x-ratelimit-remaining", "0".into()),
            ("x-ratelimit-reset", reset_at(retry_after)),
            ("x-ratelimit-reset-after", format!("{retry_after:.3}")),
            ("x-ratelimit-scope", "user".into()),
        ]
    }
}

/// The headers of a global 429 (no bucket: it is not one route's).
fn global_headers(retry_after: f64) -> Headers {
    vec![
        ("retry-after", format!("{}", retry_after.ceil() as u64)),
        ("x-ratelimit-global", "true".into()),
        ("x-ratelimit-scope", "global".into()),
    ]
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// `X-RateLimit-Reset`: the Unix time, in seconds, when the window resets.
fn reset_at(after: f64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    format!("{:.3}", now + after)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EDIT: &str = "PATCH /channels/{channel_id}/messages/{message_id}";
    const POST: &str = "POST /channels/{channel_id}/messages";

    fn header<'a>(h: &'a Headers, name: &str) -> &'a str {
        h.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {h:?}"))
    }

    #[test]
    fn a_bucket_counts_per_major_parameter_and_holds_after_its_limit() {
        let mut l = Limits::new(2, Duration::from_secs(5));
        let t = Instant::now();
        let Admission::Pass(h) = l.admit(POST, "1", false, t) else {
            panic!()
        };
        assert_eq!(header(&h, "x-ratelimit-remaining"), "1");
        assert!(matches!(l.admit(POST, "1", false, t), Admission::Pass(_)));
        assert!(matches!(l.admit(POST, "2", false, t), Admission::Pass(_)));
        match l.admit(POST, "1", false, t) {
            Admission::Limited {
                retry_after,
                global,
                violation,
                ..
            } => {
                assert_eq!((retry_after, global), (5.0, false));
                assert!(violation.is_none(), "the 429 itself breaks nothing");
            }
            other => panic!("{other:?}"),
        }
        // Inside the Retry-After, after the in-flight grace: a violation.
        let later = t + Duration::from_secs(1);
        match l.admit(POST, "1", false, later) {
            Admission::Limited { violation, .. } => assert!(violation.is_some()),
            other => panic!("{other:?}"),
        }
        // The window has passed: let through again.
        assert!(matches!(
            l.admit(POST, "1", false, t + Duration::from_secs(6)),
            Admission::Pass(_)
        ));
    }

    #[test]
    fn shared_buckets_hold_together_and_global_429s_hold_all_but_interactions() {
        let mut l = Limits::new(5, Duration::from_secs(5));
        l.share(&[POST, EDIT]);
        assert_eq!(l.bucket(POST), l.bucket(EDIT));
        let t = Instant::now();
        l.force(EDIT, 1, 2.0);
        assert!(matches!(
            l.admit(EDIT, "1", false, t),
            Admission::Limited { .. }
        ));
        let later = t + Duration::from_secs(1);
        assert!(matches!(
            l.admit(POST, "1", false, later),
            Admission::Limited {
                violation: Some(_),
                ..
            }
        ));
        l.force_global(3.0);
        let cb = "POST /interactions/{interaction_id}/{token}/callback";
        assert!(matches!(l.admit(cb, "9", true, later), Admission::Pass(_)));
        match l.admit("GET /channels/{channel_id}", "7", false, later) {
            Admission::Limited {
                global: true,
                headers,
                violation: None,
                ..
            } => assert_eq!(header(&headers, "x-ratelimit-global"), "true"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            l.admit(
                "GET /channels/{channel_id}",
                "8",
                false,
                later + Duration::from_secs(1)
            ),
            Admission::Limited {
                global: true,
                violation: Some(_),
                ..
            }
        ));
        assert!(matches!(l.admit(cb, "10", true, later), Admission::Pass(_)));
    }
}
