//! Discord's rate limits, held the way Discord counts them (its "Rate Limits" page):
//!
//! - per **bucket**: every answer names its route's bucket in `X-RateLimit-Bucket`, and
//!   several routes can share one, so a hold is keyed by the bucket, not by method and path.
//!   Until a route's first answer has named its bucket, the route itself stands for it;
//! - per **major parameter**: a bucket is counted per channel (or guild, or interaction);
//! - a 429 holds its bucket for `retry_after`, and an answer with `X-RateLimit-Remaining: 0`
//!   holds it until `X-RateLimit-Reset-After`, so the next call waits instead of being refused;
//! - a **global** 429 (`"global": true` or `X-RateLimit-Global`) holds every route of the bot,
//!   except the interaction endpoints (callbacks and their webhooks), which Discord's global
//!   limit does not bind: they are kept in a scope of their own, so a global hold never makes
//!   an interaction miss its 3 s.
//!
//! The holds live in the shared [`RateBudget`] (`RateKey::new("discord", bot, bucket)`), so
//! every conversation sees them, and no call is sent into a known hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorbot_platform::budget::{self, RateBudget, RateKey};
use anchorbot_platform::sync;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;

/// The platform name in rate keys.
const PLATFORM: &str = "discord";
/// The longest a call waits for a hold; past it the call fails with the time left, as a 429
/// would.
pub const MAX_HOLD_WAIT: Duration = Duration::from_secs(30);
/// Routes whose bucket is remembered (Discord has a few dozen the adapter uses).
const ROUTES: usize = 512;
/// What a 429 without any hint waits.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest wait a 429 is believed to ask for; a garbled value must not stall a reply.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// What one call is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallKey {
    /// The route without ids or tokens (`PATCH /channels/{id}/messages/{id}`).
    pub route: String,
    /// The rate key: the route's bucket (or the route while its bucket is unknown), counted
    /// per major parameter.
    pub key: RateKey,
}

/// The bot's rate limits, shared by its REST calls.
#[derive(Clone)]
pub struct RateLimits {
    budget: Arc<dyn RateBudget>,
    /// The bot's scope in the budget: its user id.
    scope: String,
    /// The scope of the interaction endpoints, which the global limit does not bind.
    interactions: String,
    /// Each route's last seen bucket.
    buckets: Arc<Mutex<HashMap<String, String>>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl RateLimits {
    /// Limits for the bot `scope` (its user id), held in `budget`.
    pub fn new(budget: Arc<dyn RateBudget>, scope: &str) -> Self {
        Self {
            budget,
            scope: scope.to_string(),
            interactions: format!("{scope}/interactions"),
            buckets: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The key of a call of `method` on `path` (below `/api/v10`, query allowed).
    pub fn key(&self, method: &str, path: &str) -> CallKey {
        let route = anchorbot_platform::metrics::route_template(method, path);
        let bucket = sync::lock(&self.buckets)
            .get(&route)
            .cloned()
            .unwrap_or_else(|| route.clone());
        let (scope, major) = match major(path) {
            Major::Resource(id) => (&self.scope, id),
            Major::Interaction(id) => (&self.interactions, id),
            Major::None => (&self.scope, String::new()),
        };
        let mut key = RateKey::new(PLATFORM, scope, &bucket);
        if !major.is_empty() {
            key = key.in_channel(&major);
        }
        CallKey { route, key }
    }

    /// How long a hold (the bucket's, or a global one) still stops `call`.
    pub fn held(&self, call: &CallKey) -> Option<Duration> {
        self.budget.held(&call.key)
    }

    /// Waits out a hold on `call`, at most [`MAX_HOLD_WAIT`]; `Err` with the time left when
    /// the hold is longer.
    pub async fn wait(&self, call: &CallKey) -> Result<(), Duration> {
        budget::wait_hold(self.budget.as_ref(), &call.key, MAX_HOLD_WAIT).await
    }

    /// Learns from an answer: the route's bucket, and the hold it announces (a 429, a global
    /// 429, or an exhausted bucket).
    pub fn observe(&self, call: &CallKey, status: StatusCode, headers: &HeaderMap, body: &Value) {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let mut key = call.key.clone();
        if let Some(bucket) = header("x-ratelimit-bucket").filter(|b| !b.is_empty()) {
            let mut buckets = sync::lock(&self.buckets);
            if buckets.len() >= ROUTES && !buckets.contains_key(&call.route) {
                buckets.clear();
            }
            buckets.insert(call.route.clone(), bucket.to_string());
            key.method = bucket.to_string();
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = retry_after(headers, body);
            let global = body.get("global").and_then(Value::as_bool) == Some(true)
                || header("x-ratelimit-global").is_some_and(|g| g.eq_ignore_ascii_case("true"));
            if global {
                tracing::warn!(
                    retry_after = retry_after.as_secs_f64(),
                    "Discord's global rate limit: every route waits"
                );
                let bot = RateKey::new(PLATFORM, &self.scope, &key.method);
                self.budget.hold(&bot.global(), retry_after);
            } else {
                tracing::info!(
                    route = %call.route,
                    retry_after = retry_after.as_secs_f64(),
                    "Discord rate limit: the bucket waits"
                );
                self.budget.hold(&key, retry_after);
            }
            return;
        }
        let remaining = header("x-ratelimit-remaining").and_then(|r| r.parse::<f64>().ok());
        let reset_after = header("x-ratelimit-reset-after")
            .and_then(|r| r.parse::<f64>().ok())
            .filter(|r| r.is_finite() && *r > 0.0);
        if let (Some(r), Some(after)) = (remaining, reset_after) {
            if r <= 0.0 {
                let after = after.min(MAX_HOLD_WAIT.as_secs_f64() * 10.0);
                self.budget.hold(&key, Duration::from_secs_f64(after));
            }
        }
    }
}

/// The top-level resource a route's limit is counted for.
enum Major {
    /// A channel or guild id.
    Resource(String),
    /// An interaction (by id, or by a hash of its token for its webhook).
    Interaction(String),
    /// None: the route is counted once for the bot.
    None,
}

fn major(path: &str) -> Major {
    let path = path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["channels", c, ..] | ["guilds", c, ..] | ["applications", _, "guilds", c, ..] => {
            Major::Resource((*c).to_string())
        }
        ["interactions", id, ..] => Major::Interaction((*id).to_string()),
        // The token is the webhook's major parameter; only a hash of it goes into a key.
        ["webhooks", _, token, ..] => Major::Interaction(format!("t{:016x}", fnv(token))),
        _ => Major::None,
    }
}

/// FNV-1a, to name a token without holding it.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The bot's user id, from the first part of its token (the id in base64), or `bot` when the
/// token does not hold one. The id is public; the rest of the token is never read.
pub fn bot_scope(token: &str) -> String {
    token
        .trim()
        .split('.')
        .next()
        .and_then(base64_digits)
        .unwrap_or_else(|| "bot".to_string())
}

/// Decodes unpadded base64 (standard or URL alphabet) that spells a decimal id.
fn base64_digits(s: &str) -> Option<String> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    let id = String::from_utf8(out).ok()?;
    (!id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())).then_some(id)
}

/// How long a 429 asks to wait: the body's `retry_after` (seconds, fractional), else the
/// `Retry-After` or `X-RateLimit-Reset-After` header, else a second.
pub fn retry_after(headers: &HeaderMap, body: &Value) -> Duration {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let secs = body
        .get("retry_after")
        .and_then(Value::as_f64)
        .or_else(|| header(RETRY_AFTER.as_str()))
        .or_else(|| header("x-ratelimit-reset-after"));
    match secs {
        Some(s) if s.is_finite() && s >= 0.0 => {
            Duration::from_secs_f64(s.min(MAX_RETRY_AFTER.as_secs_f64()))
        }
        _ => DEFAULT_RETRY_AFTER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchorbot_platform::LocalBudget;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    fn limits() -> RateLimits {
        RateLimits::new(Arc::new(LocalBudget::new()), "42")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_scope_is_the_bot_id_in_the_token() {
        assert_eq!(
            bot_scope("MTIwMDAwMDAwMDAwMDAwMDAwMQ.GfAkE1.secret"),
            "1200000000000000001"
        );
        assert_eq!(bot_scope("not a token"), "bot");
        assert_eq!(bot_scope(""), "bot");
    }

    #[test]
    fn routes_share_a_hold_once_discord_names_their_common_bucket() {
        let l = limits();
        let post = l.key("POST", "/channels/5/messages");
        let edit = l.key("PATCH", "/channels/5/messages/9");
        assert_ne!(post.key, edit.key, "unknown buckets: one per route");
        l.observe(
            &post,
            StatusCode::OK,
            &headers(&[
                ("x-ratelimit-bucket", "abc"),
                ("x-ratelimit-remaining", "4"),
            ]),
            &Value::Null,
        );
        let edit_first = l.key("PATCH", "/channels/5/messages/9");
        l.observe(
            &edit_first,
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("x-ratelimit-bucket", "abc")]),
            &json!({"retry_after": 30.0, "global": false}),
        );
        // The post route's bucket is the same: held too; another channel is not.
        assert!(l.held(&l.key("POST", "/channels/5/messages")).is_some());
        assert!(l.held(&l.key("POST", "/channels/6/messages")).is_none());
    }

    #[test]
    fn an_exhausted_bucket_holds_until_its_reset() {
        let l = limits();
        let typing = l.key("POST", "/channels/5/typing");
        l.observe(
            &typing,
            StatusCode::NO_CONTENT,
            &headers(&[
                ("x-ratelimit-bucket", "t"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset-after", "2.5"),
            ]),
            &Value::Null,
        );
        let left = l.held(&l.key("POST", "/channels/5/typing")).unwrap();
        assert!(left > Duration::from_secs(2), "{left:?}");
    }

    #[test]
    fn a_global_429_holds_every_route_but_the_interaction_endpoints() {
        let l = limits();
        let me = l.key("GET", "/users/@me");
        l.observe(
            &me,
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("x-ratelimit-global", "true")]),
            &json!({"retry_after": 20.0, "global": true}),
        );
        assert!(l.held(&l.key("POST", "/channels/1/messages")).is_some());
        assert!(l.held(&l.key("GET", "/channels/2")).is_some());
        assert!(l
            .held(&l.key("POST", "/interactions/7/tok/callback"))
            .is_none());
        let followup = l.key("POST", "/webhooks/3/some-long-interaction-token-value");
        assert!(l.held(&followup).is_none());
        assert!(!format!("{followup:?}").contains("some-long-interaction-token-value"));
    }
}
