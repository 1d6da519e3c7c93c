//! What a reply needs to know about where it goes in Slack, carried in the contract's
//! [`ReplyTarget`]: the channel and thread are its own fields; the workspace, the person being
//! answered and whether it is an assistant thread travel as JSON in `extra`.

use anchorbot_platform::ReplyTarget;
use serde::{Deserialize, Serialize};

/// Slack specifics of a reply target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackTarget {
    /// Workspace (team) id the event came through: the conversation's key and the memory of
    /// which workspaces stream. Not the stream's `recipient_team_id`: the person answered may
    /// belong to another team (see `users.info`'s `team_id`).
    pub team: String,
    /// The person being answered: `recipient_user_id`, and the ephemeral's recipient.
    pub user: String,
    /// The reply goes to an assistant thread (the split view): status and title go through
    /// `assistant.threads.*`.
    #[serde(default)]
    pub assistant: bool,
    /// A slash command's `response_url`, for ephemeral answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_url: Option<String>,
}

impl SlackTarget {
    /// Reads the specifics from `target.extra`; defaults when absent or unreadable.
    pub fn of(target: &ReplyTarget) -> Self {
        target
            .extra
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_default()
    }

    /// A reply target in `channel`, threaded under `thread` when given.
    pub fn into_target(
        self,
        channel: &str,
        thread: Option<&str>,
        message: Option<&str>,
    ) -> ReplyTarget {
        ReplyTarget {
            channel: channel.to_string(),
            thread: thread.map(str::to_string),
            message: message.map(str::to_string),
            extra: Some(serde_json::to_string(&self).expect("targets serialize")),
        }
    }
}

/// Whether `channel` is a direct message (Slack's DM channel ids start with `D`).
pub fn is_dm(channel: &str) -> bool {
    channel.starts_with('D')
}
