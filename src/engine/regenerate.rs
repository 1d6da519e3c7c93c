//! Regenerate: a person asks for another answer to a question the bot already answered. The
//! question is found by the message that carried the old answer; the new answer streams as a
//! new reply, and in memory it takes the old turn's place once it completes. An answer that
//! fails or is stopped leaves the old turn as it was.

use std::sync::Arc;

use anchorbot_platform::{IncomingMessage, Platform, RegenerateRequest};

use super::{Engine, Outcome};

/// What the person is told when the question is no longer in memory.
pub const GONE_NOTE: &str = "I can't answer that one again: its question is no longer in this conversation's recent memory (it was summarized or cleared). Ask it again in a message.";

impl Engine {
    /// Answers again the question whose answer `r.message` carried.
    pub(super) async fn regenerate(
        &self,
        r: &RegenerateRequest,
        platform: Arc<dyn Platform>,
    ) -> Outcome {
        let found = match self.store.anchor(&r.key).await {
            Ok(a) => a
                .turns
                .iter()
                .rev()
                .find(|e| e.replies.contains(&r.message.id))
                .map(|e| (e.at_ms, e.query.clone(), e.author.clone())),
            Err(e) => {
                tracing::error!(conversation = %r.key, error = %e, "anchor unreadable");
                None
            }
        };
        let Some((at_ms, query, asker)) = found else {
            tracing::info!(conversation = %r.key, message = %r.message.id, "regenerate: the answer's turn is not in memory");
            if let Err(e) = platform.ephemeral(&r.reply_to, &r.author, GONE_NOTE).await {
                tracing::warn!(conversation = %r.key, error = %e, "regenerate note not delivered");
            }
            return Outcome::Command;
        };
        tracing::info!(conversation = %r.key, by = %r.author.id, "answering a question again");
        let m = IncomingMessage {
            key: r.key.clone(),
            event_id: r.event_id.clone(),
            // The question stays the asker's, whoever pressed the button.
            author: asker,
            text: query,
            attachments: Vec::new(),
            reply_to: r.reply_to.clone(),
            mentions_bot: true,
            from_bot: false,
        };
        self.turn(&m, &r.event_id, platform, Some(at_ms)).await
    }
}
