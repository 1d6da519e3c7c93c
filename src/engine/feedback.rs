//! Feedback: a person's thumbs up or down on an answer is stored with the turn whose reply
//! carried it (one vote per person and answer; a changed mind replaces the vote) and counted
//! in `/status`.

use anchorbot_platform::{ConversationKey, Feedback, MessageRef};

use super::{Engine, Outcome};
use crate::store::{now_ms, Vote};

impl Engine {
    /// Remembers which platform messages carry the answer committed at `at_ms`, so feedback on
    /// any of them finds its turn. Bookkeeping only: not worth a flush of its own.
    pub(super) async fn record_replies(
        &self,
        key: &ConversationKey,
        at_ms: u64,
        messages: Vec<MessageRef>,
    ) {
        if messages.is_empty() {
            return;
        }
        let ids: Vec<String> = messages.into_iter().map(|m| m.id).collect();
        let saved = self
            .store
            .update_lazy(key, |a| {
                if let Some(e) = a.turns.iter_mut().rev().find(|e| e.at_ms == at_ms) {
                    e.replies = ids.clone();
                }
            })
            .await;
        if let Err(e) = saved {
            tracing::warn!(conversation = %key, error = %e, "reply ids not recorded; feedback on this answer will only be counted");
        }
    }

    /// Stores a verdict with its turn and counts it.
    pub(super) async fn feedback(&self, f: &Feedback) -> Outcome {
        let user = f.author.id.clone();
        let positive = f.positive;
        let message = f.message.id.clone();
        let saved = self
            .store
            .update(&f.key, |a| {
                let turn = a
                    .turns
                    .iter_mut()
                    .rev()
                    .find(|e| e.replies.contains(&message));
                let previous = match turn {
                    Some(e) => {
                        let previous = e.feedback.iter().position(|v| v.user == user);
                        let before = previous.map(|i| e.feedback.remove(i).positive);
                        e.feedback.push(Vote {
                            user: user.clone(),
                            positive,
                            at_ms: now_ms(),
                        });
                        before
                    }
                    // The turn was folded into a summary (or the ids were lost): count it.
                    None => None,
                };
                match previous {
                    Some(true) => a.counters.feedback_up = a.counters.feedback_up.saturating_sub(1),
                    Some(false) => {
                        a.counters.feedback_down = a.counters.feedback_down.saturating_sub(1)
                    }
                    None => {}
                }
                if positive {
                    a.counters.feedback_up += 1;
                } else {
                    a.counters.feedback_down += 1;
                }
            })
            .await;
        let kind = if positive { "up" } else { "down" };
        metrics::counter!(crate::ops::metrics::FEEDBACK, "kind" => kind).increment(1);
        match saved {
            Ok(_) => tracing::info!(conversation = %f.key, positive, "feedback stored"),
            Err(e) => tracing::warn!(conversation = %f.key, error = %e, "feedback not stored"),
        }
        Outcome::Command
    }
}
