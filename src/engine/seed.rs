//! Joining a discussion: the first time the bot is asked in a thread that already has
//! messages, they seed the new conversation's memory, so "@anchorbot what did we decide?"
//! works. The newest messages are kept first, within a token budget; shared files are listed,
//! not read. The seed is stored as the conversation's first summary, fenced as remembered data
//! like every summary, and summarization can later merge it.

use anchorbot_platform::{IncomingMessage, Platform, PriorMessage};

use super::Engine;
use crate::store::{now_ms, Anchor, Summary};

/// Thread messages read at most.
const MAX_HISTORY: usize = 200;

/// The heading of a seed, as it appears in memory.
pub const SEED_HEADING: &str = "Messages in this thread before anchorbot joined (oldest first):";

impl Engine {
    /// Seeds `anchor` from the thread's earlier messages when this is a new conversation in a
    /// thread that has any; returns the anchor to answer with. Failures to read the thread are
    /// logged and the turn goes on without it.
    pub(super) async fn seed_from_thread(
        &self,
        m: &IncomingMessage,
        anchor: Anchor,
        platform: &dyn Platform,
    ) -> Anchor {
        let fresh = anchor.turns.is_empty()
            && anchor.summaries.is_empty()
            && anchor.counters.turns_total == 0;
        // A message that starts its thread has nothing before it.
        let starts_thread = m.reply_to.thread.is_none() || m.reply_to.thread == m.reply_to.message;
        if !fresh || starts_thread {
            return anchor;
        }
        let prior = match platform.history(&m.reply_to, MAX_HISTORY).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(conversation = %m.key, error = %e, "thread history unavailable; answering without it");
                return anchor;
            }
        };
        let system_tokens = self.system_tokens(&anchor);
        let (budget, _) = self.budgets().await;
        let room = self.recent_budget(budget, system_tokens, false) / 2;
        let Some(text) = seed_text(self.counter.as_ref(), &prior, room) else {
            return anchor;
        };
        let kept = text.lines().count() - 1;
        let saved = self
            .store
            .update(&m.key, |a| {
                if a.summaries.is_empty() && a.turns.is_empty() {
                    a.summaries.push(Summary {
                        text: text.clone(),
                        covers_turns: 0,
                        at_ms: now_ms(),
                    });
                }
            })
            .await;
        match saved {
            Ok(a) => {
                tracing::info!(conversation = %m.key, messages = kept, of = prior.len(), "conversation seeded from the thread");
                a
            }
            Err(e) => {
                tracing::warn!(conversation = %m.key, error = %e, "thread seed not stored");
                anchor
            }
        }
    }
}

/// The seed's text: the newest messages that fit `room` tokens, in order; `None` when there is
/// nothing to seed.
pub fn seed_text(
    counter: &dyn crate::llm::tokens::TokenCounter,
    prior: &[PriorMessage],
    room: usize,
) -> Option<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut used = counter.count(SEED_HEADING);
    for p in prior.iter().rev() {
        let mut line = format!(
            "- {}: {}",
            p.author.display_name,
            p.text.trim().replace('\n', " ")
        );
        if !p.files.is_empty() {
            line.push_str(&format!(" [shared: {}]", p.files.join(", ")));
        }
        let cost = counter.count(&line) + 1;
        if used + cost > room {
            break;
        }
        used += cost;
        lines.push(line);
    }
    if lines.is_empty() {
        return None;
    }
    lines.reverse();
    Some(format!("{SEED_HEADING}\n{}", lines.join("\n")))
}

#[cfg(test)]
mod tests {
    use anchorbot_platform::Author;

    use super::*;

    struct Words;
    impl crate::llm::tokens::TokenCounter for Words {
        fn count(&self, text: &str) -> usize {
            text.split_whitespace().count()
        }
    }

    fn said(who: &str, text: &str) -> PriorMessage {
        PriorMessage {
            author: Author {
                id: who.into(),
                display_name: who.into(),
            },
            text: text.into(),
            from_bot: false,
            files: Vec::new(),
        }
    }

    #[test]
    fn the_newest_messages_are_kept_in_order_within_the_budget() {
        let prior = vec![
            said("Ann", "old words that will not fit at all here"),
            said("Bo", "we decided on plan B"),
            said("Cy", "agreed"),
        ];
        let text = seed_text(&Words, &prior, 24).unwrap();
        assert!(
            text.ends_with("- Bo: we decided on plan B\n- Cy: agreed"),
            "{text}"
        );
        assert!(!text.contains("Ann"));
        assert!(seed_text(&Words, &[], 100).is_none());
    }
}
