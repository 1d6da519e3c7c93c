//! What a reply needs to know about where it goes in Discord, carried in the contract's
//! [`ReplyTarget`]: the channel (or thread) to post in, the thread and the message being
//! answered are its own fields; the guild and a slash command's interaction travel as JSON in
//! `extra`.

use anchorbot_platform::ReplyTarget;
use serde::{Deserialize, Serialize};

/// Discord specifics of a reply target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscordTarget {
    /// The guild, if the reply goes to a guild channel or thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild: Option<String>,
    /// The slash command being answered, for ephemeral answers through its callback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction: Option<InteractionRef>,
}

/// A slash command or button press that can still be answered (its token lasts 15 minutes).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionRef {
    /// Interaction id.
    pub id: String,
    /// Interaction token: callback and webhook edits.
    pub token: String,
    /// The application the interaction belongs to (the webhook id for `@original`).
    pub application: String,
    /// A deferred (type 5) response was sent: the answer edits `@original`.
    #[serde(default)]
    pub deferred: bool,
    /// A button press acknowledged with type 6: private notes are follow-up messages.
    #[serde(default)]
    pub acknowledged: bool,
}

impl std::fmt::Debug for InteractionRef {
    // The token lets anyone answer as the bot for 15 minutes: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InteractionRef")
            .field("id", &self.id)
            .field("application", &self.application)
            .field("deferred", &self.deferred)
            .field("acknowledged", &self.acknowledged)
            .finish_non_exhaustive()
    }
}

impl DiscordTarget {
    /// Reads the specifics from `target.extra`; defaults when absent or unreadable.
    pub fn of(target: &ReplyTarget) -> Self {
        target
            .extra
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_default()
    }

    /// A reply target posting in `channel` (a thread's id when the reply goes to a thread).
    pub fn into_target(
        self,
        channel: &str,
        thread: Option<&str>,
        message: Option<&str>,
    ) -> ReplyTarget {
        let extra = (self != Self::default())
            .then(|| serde_json::to_string(&self).ok())
            .flatten();
        ReplyTarget {
            channel: channel.to_string(),
            thread: thread.map(str::to_string),
            message: message.map(str::to_string),
            extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_round_trips_through_extra() {
        let t = DiscordTarget {
            guild: Some("1".into()),
            interaction: Some(InteractionRef {
                id: "2".into(),
                token: "tok".into(),
                application: "3".into(),
                deferred: true,
                acknowledged: false,
            }),
        };
        let r = t.clone().into_target("10", Some("10"), Some("10"));
        assert_eq!(DiscordTarget::of(&r), t);
        assert!(!format!("{:?}", t).contains("tok"));
        let plain = DiscordTarget::default().into_target("5", None, None);
        assert_eq!(plain.extra, None);
        assert_eq!(DiscordTarget::of(&plain), DiscordTarget::default());
    }
}
