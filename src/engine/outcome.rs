//! How an event ended: the outcome the callers (the dispatcher, `anchorbot ask`) act on, with
//! typed reasons for a refused or failed turn. Each reason's `Display` is the one line the log
//! and `anchorbot ask` show.

use std::sync::Arc;

use super::ingests::PER_CONVERSATION;
use crate::llm::prompt::FitError;
use crate::llm::turn::Failure;
use crate::llm::LlmError;
use crate::store::StoreError;

/// How an event ended, for callers that need an exit code.
#[derive(Debug, Clone)]
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
    /// The message was refused before reaching the model.
    Refused(Refusal),
    /// The turn failed and nothing was stored.
    Failed(TurnFailure),
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

/// Why a message was refused before it reached the model. The user reads the same line after
/// a `⚠️`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// The message is over the size read in one message.
    #[error("Your message is {kb} KB, over the {max_kb} KB I can read in one message. Share it as a file instead, or send the part that matters.")]
    TooLong {
        /// Its size, in KB.
        kb: usize,
        /// The most read, in KB.
        max_kb: usize,
    },
    /// The conversation's memory could not be read.
    #[error("I could not read this conversation's memory: {0}")]
    MemoryUnreadable(Arc<StoreError>),
    /// No prompt fits the input budget.
    #[error(transparent)]
    NoRoom(#[from] FitError),
    /// The message's files were not taken: too many are waiting.
    #[error("{0}; files not taken")]
    FilesNotTaken(FilesBusy),
}

/// Where too many files are waiting for a message's files to be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FilesBusy {
    /// This conversation has [`PER_CONVERSATION`] messages with files waiting.
    #[error(
        "I'm still reading the files of {PER_CONVERSATION} earlier messages in this conversation"
    )]
    Conversation,
    /// All conversations together have as many as are taken.
    #[error("I'm reading as many files as I can take at once")]
    Everywhere,
}

/// Why a turn failed (nothing was stored). Never holds answer text.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TurnFailure {
    /// The model's request or stream failed.
    #[error(transparent)]
    Model(LlmError),
    /// The model spent its whole output budget reasoning and gave no answer.
    #[error("the model used its whole output budget reasoning")]
    OnlyReasoning,
    /// The model finished with an empty answer.
    #[error("the model returned an empty answer")]
    EmptyAnswer,
    /// The answer was shown but could not be stored.
    #[error("the answer could not be saved")]
    NotSaved(#[source] Arc<StoreError>),
    /// The background reading of the message's files ended without an outcome.
    #[error("reading the shared files ended before it finished")]
    FilesEnded,
    /// Reading the message's files panicked.
    #[error("reading the shared files panicked")]
    FilesPanicked,
}

impl From<&Failure> for TurnFailure {
    fn from(f: &Failure) -> Self {
        match f {
            Failure::Llm { error, .. } => TurnFailure::Model(error.clone()),
            Failure::OnlyReasoning => TurnFailure::OnlyReasoning,
            Failure::EmptyAnswer => TurnFailure::EmptyAnswer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_the_lines_users_and_logs_had() {
        assert_eq!(
            Refusal::FilesNotTaken(FilesBusy::Everywhere).to_string(),
            "I'm reading as many files as I can take at once; files not taken"
        );
        assert_eq!(
            Refusal::TooLong { kb: 40, max_kb: 32 }.to_string(),
            "Your message is 40 KB, over the 32 KB I can read in one message. Share it as a file instead, or send the part that matters."
        );
        assert_eq!(
            TurnFailure::from(&Failure::EmptyAnswer).to_string(),
            "the model returned an empty answer"
        );
        assert_eq!(
            TurnFailure::from(&Failure::OnlyReasoning).to_string(),
            "the model used its whole output budget reasoning"
        );
    }
}
