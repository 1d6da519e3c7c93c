//! Slack's published rate limits, and how the adapter's Web API calls spend them from the
//! shared budget ([`anchorbot_platform::budget`]).
//!
//! Slack limits each method per workspace and app (docs.slack.dev, "Rate limits", and each
//! method's page): Tier 2 about 20 calls a minute, Tier 3 about 50, Tier 4 about 100, and
//! `chat.postMessage` about one a second per channel with short bursts. The adapter spends at
//! those rates with a burst a tenth smaller than a minute's worth, so that a request that
//! reaches Slack a little later than it was counted here still finds an allowance there.
//!
//! Before a call, [`before_call`] takes its allowance, waiting as long as the caller's
//! [`Patience`] allows; no call is sent into a 429's hold. After a 429, [`after_429`] holds the
//! method (for `chat.postMessage`, its channel) for every conversation until `Retry-After` has
//! passed. The seconds a call waited, and the delay a refusal imposes on its sender, are
//! counted in `/metrics` (`anchorbot_platform_rate_limit_wait_seconds`).

use std::time::Duration;

use anchorbot_platform::budget::{self, Rate, RateBudget, RateKey};

use crate::client::Api;

/// The platform's name in budget keys and metrics.
pub const PLATFORM: &str = "slack";
/// What a 429 without `Retry-After` holds its method for.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A method's published rate-limit tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// About 1 call a minute.
    Tier1,
    /// About 20 calls a minute.
    Tier2,
    /// About 50 calls a minute.
    Tier3,
    /// About 100 calls a minute.
    Tier4,
    /// `chat.postMessage`: about one a second per channel, with short bursts.
    PostMessage,
    /// `assistant.threads.setStatus`: "special" on its page, with no figure; slack-morphism's
    /// table and the adapter take it as about one a second.
    SetStatus,
}

/// The tier of `method`, from its page in Slack's method reference. Methods the adapter does
/// not know are taken as Tier 2, the tier of most methods.
pub fn tier(method: &str) -> Tier {
    match method {
        "apps.connections.open" => Tier::Tier1,
        "chat.startStream" | "chat.stopStream" | "reactions.remove" => Tier::Tier2,
        "chat.update"
        | "chat.delete"
        | "reactions.add"
        | "conversations.replies"
        | "conversations.history"
        | "conversations.info" => Tier::Tier3,
        "chat.appendStream"
        | "chat.postEphemeral"
        | "users.info"
        | "files.info"
        | "auth.test"
        | "assistant.threads.setTitle"
        | "assistant.threads.setSuggestedPrompts" => Tier::Tier4,
        "chat.postMessage" => Tier::PostMessage,
        "assistant.threads.setStatus" => Tier::SetStatus,
        _ => Tier::Tier2,
    }
}

/// The rate the adapter spends `method` at: the published one, with a burst a tenth smaller
/// than the published burst (at least one call less), as a cushion for the time between
/// counting a call here and its arrival at Slack.
pub fn rate(method: &str) -> Rate {
    let (per_minute, burst) = match tier(method) {
        Tier::Tier1 => (1, 1),
        Tier::Tier2 => (20, 20),
        Tier::Tier3 => (50, 50),
        Tier::Tier4 => (100, 100),
        Tier::PostMessage => (60, 3),
        Tier::SetStatus => (60, 5),
    };
    let cushion = (burst / 10).max(1);
    Rate::per_minute(per_minute).with_burst((burst - cushion).max(1))
}

/// The budget key of `method` in workspace `scope`; `chat.postMessage` is counted per
/// `channel`.
pub fn key(scope: &str, method: &str, channel: Option<&str>) -> RateKey {
    let key = RateKey::new(PLATFORM, scope, method);
    match (tier(method), channel) {
        (Tier::PostMessage, Some(channel)) => key.in_channel(channel),
        _ => key,
    }
}

/// How a call meets an allowance that is spent, or a method held by a 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Waits up to this long. Past it the call is not sent, and its sender is told to try
    /// again after the wait (a delay that is counted).
    Wait(Duration),
    /// Is not sent unless it can go now; its sender takes another path (nothing is delayed,
    /// nothing counted).
    Reroute,
}

impl Patience {
    fn max_wait(self) -> Duration {
        match self {
            Patience::Wait(d) => d,
            Patience::Reroute => Duration::ZERO,
        }
    }
}

/// Takes `method`'s allowance in the adapter's workspace (`channel` for `chat.postMessage`),
/// waiting as `patience` allows. `Err(wait)`: not sent; the allowance (or a hold) says to try
/// again after `wait`.
pub async fn before_call(
    api: &Api,
    method: &str,
    channel: Option<&str>,
    patience: Patience,
) -> Result<(), Duration> {
    let key = key(&api.workspace(), method, channel);
    let budget: &dyn RateBudget = &*api.budget;
    match budget::spend(budget, &key, rate(method), patience.max_wait()).await {
        Ok(()) => Ok(()),
        Err(wait) => {
            if matches!(patience, Patience::Wait(_)) {
                budget.waited(&key, wait);
            }
            Err(wait)
        }
    }
}

/// Records Slack's 429 for `method` (and `channel`): it is held for every conversation until
/// `retry_after` has passed. The sender's delay is counted unless it takes another path.
pub fn after_429(
    api: &Api,
    method: &str,
    channel: Option<&str>,
    retry_after: Option<Duration>,
    patience: Patience,
) -> Duration {
    let retry_after = retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
    let key = key(&api.workspace(), method, channel);
    api.budget.hold(&key, retry_after);
    if matches!(patience, Patience::Wait(_)) {
        api.budget.waited(&key, retry_after);
    }
    tracing::info!(
        method,
        retry_after_secs = retry_after.as_secs_f64(),
        "Slack rate-limited a call; the method is held for every conversation"
    );
    retry_after
}

/// The calls `method` could make now in the adapter's workspace (0 while a 429 holds it).
pub fn available(api: &Api, method: &str, channel: Option<&str>) -> f64 {
    api.budget
        .available(&key(&api.workspace(), method, channel), rate(method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_tiers_with_a_cushion() {
        assert_eq!(tier("chat.startStream"), Tier::Tier2);
        assert_eq!(tier("chat.update"), Tier::Tier3);
        assert_eq!(tier("chat.appendStream"), Tier::Tier4);
        assert_eq!(
            rate("chat.startStream"),
            Rate::per_minute(20).with_burst(18)
        );
        assert_eq!(rate("chat.update"), Rate::per_minute(50).with_burst(45));
        assert_eq!(
            rate("chat.appendStream"),
            Rate::per_minute(100).with_burst(90)
        );
        assert_eq!(rate("chat.postMessage"), Rate::per_minute(60).with_burst(2));
        assert_eq!(rate("some.newMethod"), rate("reactions.remove"));
    }

    #[test]
    fn only_post_message_is_counted_per_channel() {
        assert_eq!(
            key("T1", "chat.postMessage", Some("C1")).channel.as_deref(),
            Some("C1")
        );
        assert_eq!(key("T1", "chat.update", Some("C1")).channel, None);
        assert_eq!(key("T1", "chat.update", None).scope, "T1");
    }
}
