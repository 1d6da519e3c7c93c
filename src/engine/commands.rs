//! The commands: answered privately, before any model call, never behind a model.

use std::sync::Arc;

use anchorbot_platform::{Author, ConversationKey, Platform, ReplyTarget};

use super::{Engine, Outcome};
use crate::commands::{counted, help_text, Command};
use crate::docs::service::Cleared;
use crate::docs::DocError;
use crate::store::StoreError;

/// Why a command could not be carried out; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The conversation's memory could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The conversation's documents could not be read or removed.
    #[error(transparent)]
    Docs(#[from] DocError),
}

impl Engine {
    /// Answers a command privately.
    pub(super) async fn command(
        &self,
        cmd: Command,
        key: &ConversationKey,
        to: &ReplyTarget,
        user: &Author,
        platform: Arc<dyn Platform>,
    ) -> Outcome {
        let text = match self.run_command(&cmd, key).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(conversation = %key, command = ?cmd, error = %e, "command failed");
                match cmd {
                    Command::Clear => format!("⚠️ Nothing was cleared: {e}. Try /clear again."),
                    _ => format!("⚠️ The command failed: {e}"),
                }
            }
        };
        if let Err(e) = platform.ephemeral(to, user, &text).await {
            tracing::warn!(conversation = %key, error = %e, "command answer not delivered");
        }
        Outcome::Command
    }

    /// Executes a command and returns its answer text.
    pub async fn run_command(
        &self,
        cmd: &Command,
        key: &ConversationKey,
    ) -> Result<String, CommandError> {
        Ok(match cmd {
            Command::Clear => self.clear(key).await?,
            Command::Files => self.files_text(key).await?,
            Command::Status => self.status(key).await?.render(),
            Command::Help => help_text(),
            Command::TakesNoArguments(name) => {
                format!("/{name} takes no arguments, so nothing was done. Send /{name} on its own.")
            }
            Command::Unknown(name) => format!("Unknown command /{name}.\n{}", help_text()),
        })
    }

    /// Deletes the conversation's memory, documents, chunks and vectors in one transaction:
    /// all of it goes, or (on failure) none of it. Files being read in the conversation are
    /// stopped first, and waited for, so none of them writes after the clear.
    async fn clear(&self, key: &ConversationKey) -> Result<String, CommandError> {
        // No answer of this conversation runs while it is cleared (and none starts before).
        let _turn = self.turn_locks.lock(key).await;
        self.stop_reading(key).await;
        let before = self.store.anchor(key).await?;
        let Cleared {
            documents: docs,
            chunks,
        } = match &self.docs {
            Some(d) => d.clear(key).await?,
            None => {
                self.store.reset(key).await?;
                Cleared::default()
            }
        };
        tracing::info!(conversation = %key, docs, chunks, "conversation cleared");
        Ok(format!(
            "Cleared this conversation: {}, {}, {} and {} ({}) removed.",
            counted(before.counters.turns_total, "turn", "turns"),
            counted(before.summaries.len() as u64, "summary", "summaries"),
            counted(before.facts.len() as u64, "key fact", "key facts"),
            counted(docs, "document", "documents"),
            counted(chunks, "chunk", "chunks"),
        ))
    }
}
