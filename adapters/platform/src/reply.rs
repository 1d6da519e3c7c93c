//! A streamed reply built on the [`Platform`] primitives: the first text is posted, later text
//! edits it at most once per `min_edit_interval`, and text past the platform's length limit
//! continues in follow-up messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{split_message, FinalState, MessageRef, Platform, PlatformError, ReplyTarget, Status};

/// How many times the final edit is retried when the platform rate-limits it.
const FINAL_RETRIES: usize = 3;

/// One reply that grows as the answer streams in.
pub struct StreamingReply {
    /// The adapter that posts and edits.
    platform: Arc<dyn Platform>,
    /// Where the reply goes.
    target: ReplyTarget,
    /// Messages posted so far, with the text each currently shows.
    sent: Vec<(MessageRef, String)>,
    /// When the platform was last touched, for edit throttling.
    last_flush: Option<Instant>,
    /// The full reply text as of the latest update.
    latest: String,
}

impl StreamingReply {
    /// Starts a reply to `target`. Nothing is posted until there is text.
    pub fn new(platform: Arc<dyn Platform>, target: ReplyTarget) -> Self {
        Self {
            platform,
            target,
            sent: Vec::new(),
            last_flush: None,
            latest: String::new(),
        }
    }

    /// Shows a transient status. Failures are logged, never fatal: a status is cosmetic.
    pub async fn status(&self, status: Status) {
        if let Err(e) = self.platform.status(&self.target, &status).await {
            tracing::debug!(error = %e, "status update failed");
        }
    }

    /// Offers reasoning text to the adapter. Failures are logged, never fatal.
    pub async fn reasoning(&self, delta: &str) {
        if let Err(e) = self.platform.reasoning(&self.target, delta).await {
            tracing::debug!(error = %e, "reasoning update failed");
        }
    }

    /// Replaces the reply's text with `full_text`; the platform sees it when the edit
    /// interval allows.
    pub async fn update(&mut self, full_text: &str) {
        self.latest.clear();
        self.latest.push_str(full_text);
        let due = self
            .last_flush
            .is_none_or(|t| t.elapsed() >= self.platform.limits().min_edit_interval);
        if due && !self.latest.trim().is_empty() {
            if let Err(e) = self.flush().await {
                tracing::debug!(error = %e, "streaming edit skipped");
            }
        }
    }

    /// Writes the final text, retrying rate limits, clears the status and reports the state.
    pub async fn finish(
        &mut self,
        final_text: &str,
        state: FinalState,
    ) -> Result<(), PlatformError> {
        self.latest.clear();
        self.latest.push_str(final_text);
        let mut result = self.flush().await;
        for _ in 0..FINAL_RETRIES {
            match &result {
                Err(PlatformError::RateLimited { retry_after }) => {
                    tokio::time::sleep((*retry_after).min(Duration::from_secs(30))).await;
                    result = self.flush().await;
                }
                _ => break,
            }
        }
        self.status(Status::Clear).await;
        if let Err(e) = self.platform.finished(&self.target, &state).await {
            tracing::debug!(error = %e, "finish notification failed");
        }
        result
    }

    async fn flush(&mut self) -> Result<(), PlatformError> {
        self.last_flush = Some(Instant::now());
        let limit = self.platform.limits().max_message_chars;
        let pieces = split_message(&self.latest, limit);
        for (i, piece) in pieces.into_iter().enumerate() {
            if i < self.sent.len() {
                if self.sent[i].1 != piece {
                    self.platform.edit(&self.sent[i].0, &piece).await?;
                    self.sent[i].1 = piece;
                }
            } else {
                let r = self.platform.post(&self.target, &piece).await?;
                self.sent.push((r, piece));
            }
        }
        Ok(())
    }
}
