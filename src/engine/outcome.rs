//! How an event ended: the outcome the callers (the dispatcher, `anchorbot ask`) act on.

/// How an event ended, for callers that need an exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do (empty message).
    Ignored,
    /// The event was already handled.
    Duplicate,
    /// A turn was answered and stored.
    Answered {
        /// The answer was cut at the output limit.
        truncated: bool,
    },
    /// A command was answered (or files were ingested).
    Command,
    /// The message was refused before reaching the model; the reason, in one line.
    Refused(String),
    /// The turn failed and nothing was stored; the reason, in one line (no answer text).
    Failed(String),
    /// Someone stopped the answer; what was written stays in the chat, nothing was stored.
    Stopped,
}

impl Outcome {
    /// The outcome's name, for the turns metric (a bounded label).
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ignored => "ignored",
            Outcome::Duplicate => "duplicate",
            Outcome::Answered { truncated: false } => "answered",
            Outcome::Answered { truncated: true } => "truncated",
            Outcome::Command => "command",
            Outcome::Refused(_) => "refused",
            Outcome::Failed(_) => "failed",
            Outcome::Stopped => "stopped",
        }
    }
}
