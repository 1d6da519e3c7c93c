//! Memory: folds the oldest turns into the summary buffer and key facts once the recent turns
//! outgrow their budget. Runs in the background after an answer is delivered.
//!
//! Memory is never replaced by output that did not complete: a summary is used only when the
//! model finished with `stop`, its reasoning closed (or came apart as `reasoning_content`), and
//! a non-empty `SUMMARY:` part is present. Otherwise the turns stay verbatim, the reason is
//! logged and shown in `/status`, and the next attempt waits a growing number of turns.

use std::sync::Arc;

use anchorbot_platform::sync;
use anchorbot_platform::ConversationKey;

use super::Engine;
use crate::llm::lang_filter::ScriptFilter;
use crate::llm::prompt;
use crate::llm::think::{Piece, ThinkSplitter, ThinkStart};
use crate::llm::{ChatMessage, ChatRequest, Completion, FinishReason, LlmError, Role};
use crate::store::{now_ms, Anchor, StoreError, Summary, SummaryHold};

/// Output room for a summary: enough for a reasoning model to think and still answer.
const SUMMARY_MAX_TOKENS: usize = 4096;

/// Output room for a summary from a model that does not think first: a paragraph and a few
/// facts. A small model that rambles past it is cut, and its summary refused, instead of
/// holding the model for minutes.
const PLAIN_SUMMARY_MAX_TOKENS: usize = 1024;

/// How a summary answer from the embedded model starts: SmolLM2-135M handed this writes the
/// summary itself, where asked for the `SUMMARY:`/`FACTS:` form it copied the form's
/// description every time.
const SUMMARY_LEAD: &str = "SUMMARY: In this conversation,";

/// The request to a model that is handed [`SUMMARY_LEAD`]: plain words, no form to copy.
const PLAIN_SUMMARY_ASK: &str = "Summarize the conversation above in two or three sentences, \
keeping decisions, names, numbers and open questions.";

/// The most turns a failed summarization waits before the next attempt.
const MAX_BACKOFF_TURNS: u64 = 32;

/// Marker that opens every summarization prompt (tests and logs recognise it).
pub const SUMMARY_MARKER: &str = "You maintain the long-term memory of a team conversation.";

/// Why a summary answer was not used: a closed set, each kept out of memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Generation stopped at the output limit (or for another reason than `stop`).
    #[error("the summary was cut off ({0})")]
    Unfinished(String),
    /// The model was still reasoning when it stopped: no `</think>`.
    #[error("the model was still reasoning when it stopped")]
    ReasoningOpen,
    /// No `SUMMARY:` part with text (an empty answer, a refusal, prose).
    #[error("the answer had no SUMMARY part")]
    NoSummary,
    /// The summary only repeats the request's own words (a small model copying the form).
    #[error("the summary only repeated the request")]
    Echo,
}

/// Summarization failures; none of them lose data.
#[derive(Debug, thiserror::Error)]
pub enum SummarizeError {
    /// The model could not be asked.
    #[error("the model could not summarize: {0}")]
    Llm(#[from] LlmError),
    /// The answer was not trustworthy enough to replace turns.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Engine {
    /// Runs summarization for `key` in the background unless one is already running.
    pub(super) fn spawn_summarize(self: &Arc<Self>, key: ConversationKey) {
        if !sync::lock(&self.summarizing).insert(key.clone()) {
            return;
        }
        let engine = self.clone();
        self.background.spawn(async move {
            if let Err(e) = engine.maybe_summarize(&key).await {
                metrics::counter!(crate::ops::metrics::SUMMARIZATIONS_REFUSED).increment(1);
                tracing::warn!(conversation = %key, error = %e, "summarization failed; turns kept verbatim");
                if let Err(e) = engine.hold_summaries(&key, &e).await {
                    tracing::warn!(conversation = %key, error = %e, "could not record the summarization back-off");
                }
            }
            sync::lock(&engine.summarizing).remove(&key);
        });
    }

    /// Records a failed attempt: the next one waits 2, 4, 8… turns (at most 32).
    async fn hold_summaries(
        &self,
        key: &ConversationKey,
        e: &SummarizeError,
    ) -> Result<(), StoreError> {
        let reason = e.to_string();
        self.store
            .update(key, |a| {
                let failures = a.summary_hold.as_ref().map_or(0, |h| h.failures) + 1;
                let wait = (1u64 << failures.min(6)).min(MAX_BACKOFF_TURNS);
                a.summary_hold = Some(SummaryHold {
                    reason: reason.clone(),
                    failures,
                    retry_at_turn: a.counters.turns_total + wait,
                });
            })
            .await?;
        Ok(())
    }

    /// Folds the oldest turns into the summary buffer when the recent turns outgrow their
    /// budget. Runs after the reply is delivered; a failure keeps the turns untouched.
    pub async fn maybe_summarize(&self, key: &ConversationKey) -> Result<bool, SummarizeError> {
        let anchor = self.store.anchor(key).await?;
        if let Some(hold) = &anchor.summary_hold {
            if anchor.counters.turns_total < hold.retry_at_turn {
                tracing::debug!(conversation = %key, retry_at_turn = hold.retry_at_turn, "summarization backing off");
                return Ok(false);
            }
        }
        let c = self.counter.as_ref();
        let costs: Vec<usize> = anchor
            .turns
            .iter()
            .map(|e| prompt::exchange_tokens(c, e))
            .collect();
        // Against the input budget in effect, which a server's context length may shrink.
        let (input, output) = self.budgets().await;
        let budget = self.recent_budget(
            input,
            self.system_tokens(&anchor),
            self.has_documents(key).await,
        );
        let mut remaining: usize = costs.iter().sum();
        if remaining <= budget {
            return Ok(false);
        }
        // Fold until a quarter of the budget is left, always keeping the two newest turns
        // verbatim. Folding rewrites the prompt's memory section, which invalidates the
        // server's prefix cache from there on, so fold rarely and in large steps.
        let mut fold = 0;
        while fold < anchor.turns.len().saturating_sub(2) && remaining > budget / 4 {
            remaining -= costs[fold];
            fold += 1;
        }
        if fold == 0 {
            return Ok(false);
        }
        // Past the cap, every earlier summary is merged into the new one.
        let merge_all = anchor.summaries.len() + 1 > self.settings.max_summaries;
        let facts = self.facts().await;
        let think_start = self.settings.reasoning.think_start();
        // The embedded model is a 135M one: asked for the SUMMARY/FACTS form, it copies the
        // form's description. Handed the start of a summary and a plain request, it writes one
        // (facts are then left to larger models); it resumes a final assistant message itself.
        // A server's model keeps the form, since it also gives the key facts.
        let lead = think_start == ThinkStart::Outside
            && facts.context_source == crate::llm::facts::ContextSource::Embedded;
        let ask = if lead { PLAIN_SUMMARY_ASK } else { FORM_ASK };
        let mut request =
            summary_request_asking(&self.settings.language, &anchor, fold, merge_all, ask);
        if lead {
            request
                .messages
                .push(ChatMessage::new(Role::Assistant, SUMMARY_LEAD));
            request.continue_final = true;
        }
        request.max_tokens = if think_start == ThinkStart::Outside {
            PLAIN_SUMMARY_MAX_TOKENS
        } else {
            SUMMARY_MAX_TOKENS.max(output)
        };
        if let Some(ctx) = facts.context_length.map(|c| c as usize) {
            let prompt_tokens: usize = request
                .messages
                .iter()
                .map(|m| prompt::message_tokens(c, &m.content))
                .sum();
            let room = ctx.saturating_sub(self.usable(prompt_tokens) + prompt_tokens / 5);
            request.max_tokens = request.max_tokens.min(room.max(MIN_SUMMARY_TOKENS));
        }
        // vLLM passes chat_template_kwargs to the template: Qwen3 then skips its reasoning.
        request.thinking_off = facts.all_vllm;
        let mut done = self.llm.complete(&request).await?;
        if lead && done.content.split_whitespace().count() < 3 {
            // Only the lead's own words would remain: nothing was summarized.
            return Err(Rejection::NoSummary.into());
        }
        if lead
            && !done
                .content
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("summary:")
        {
            done.content = format!("{SUMMARY_LEAD} {}", done.content.trim_start());
        }
        let (summary, new_facts) = accept_summary(&done, think_start)?;
        if echoes_the_request(&summary, &request) {
            return Err(Rejection::Echo.into());
        }
        // Memory is re-injected into every prompt: keep filtered scripts out of it too.
        let mut filter = ScriptFilter::new(&self.settings.active_filter());
        let summary = filter.push(&summary).trim().to_string();
        let new_facts: Vec<String> = new_facts
            .iter()
            .map(|f| filter.push(f).trim().to_string())
            .filter(|f| !f.is_empty())
            .collect();
        if summary.is_empty() {
            return Err(Rejection::NoSummary.into());
        }
        let last_folded_at = anchor.turns[fold - 1].at_ms;
        let covered: u64 = if merge_all {
            anchor.summaries.iter().map(|s| s.covers_turns).sum::<u64>() + fold as u64
        } else {
            fold as u64
        };
        let max_facts = self.settings.max_facts;
        let updated = self
            .store
            .update(key, |a| {
                // Only fold if the anchor still starts with the turns we summarized.
                if a.turns.len() < fold || a.turns[fold - 1].at_ms != last_folded_at {
                    return;
                }
                a.turns.drain(..fold);
                if merge_all {
                    a.summaries.clear();
                }
                a.summaries.push(Summary {
                    text: summary.clone(),
                    covers_turns: covered,
                    at_ms: now_ms(),
                });
                merge_facts(&mut a.facts, &new_facts, max_facts);
                a.counters.summarizations += 1;
                a.summary_hold = None;
            })
            .await?;
        metrics::counter!(crate::ops::metrics::SUMMARIZATIONS).increment(1);
        tracing::info!(conversation = %key, folded = fold, summaries = updated.summaries.len(), facts = updated.facts.len(), "summarized older turns");
        Ok(true)
    }
}

/// The least output a summary call is given, even on a small context.
const MIN_SUMMARY_TOKENS: usize = 512;

/// The summary and facts of a completed summarization, or why it cannot be trusted.
/// `think_start` says whether the model's output starts inside a think block (R1 distills).
pub fn accept_summary(
    done: &Completion,
    think_start: ThinkStart,
) -> Result<(String, Vec<String>), Rejection> {
    match &done.finish {
        FinishReason::Stop => {}
        FinishReason::Length => return Err(Rejection::Unfinished("length".into())),
        FinishReason::Other(r) => return Err(Rejection::Unfinished(r.clone())),
    }
    let mut splitter = ThinkSplitter::new(think_start);
    if done.reasoning_apart {
        splitter.set_outside();
    }
    let mut answer = String::new();
    let pieces = splitter
        .push(&done.content)
        .into_iter()
        .chain(splitter.finish());
    for piece in pieces {
        match piece {
            Piece::Answer(a) => answer.push_str(&a),
            Piece::Reasoning(_) => {}
            Piece::AnswerWasReasoning => answer.clear(),
        }
    }
    if splitter.is_inside() {
        return Err(Rejection::ReasoningOpen);
    }
    parse_summary(&answer).ok_or(Rejection::NoSummary)
}

/// Builds the summarization request for the `fold` oldest turns.
pub fn summary_request(
    language: &str,
    anchor: &Anchor,
    fold: usize,
    merge_all: bool,
) -> ChatRequest {
    summary_request_asking(language, anchor, fold, merge_all, FORM_ASK)
}

/// The same, ending with `ask` (the form, or the embedded model's plain request).
fn summary_request_asking(
    language: &str,
    anchor: &Anchor,
    fold: usize,
    merge_all: bool,
    ask: &str,
) -> ChatRequest {
    let mut user = String::new();
    if merge_all && !anchor.summaries.is_empty() {
        user.push_str("Earlier summaries, to merge into the new one:\n");
        for s in &anchor.summaries {
            user.push_str(&format!("- {}\n", s.text));
        }
        user.push('\n');
    }
    if !anchor.facts.is_empty() {
        user.push_str("Known key facts:\n");
        for f in &anchor.facts {
            user.push_str(&format!("- {f}\n"));
        }
        user.push('\n');
    }
    user.push_str("Conversation to summarize:\n");
    for e in &anchor.turns[..fold] {
        user.push_str(&format!(
            "{}: {}\nAssistant: {}\n",
            e.author.display_name, e.query, e.answer
        ));
    }
    user.push('\n');
    user.push_str(ask);
    ChatRequest {
        messages: vec![
            ChatMessage::new(
                Role::System,
                format!("{SUMMARY_MARKER} Write in {language}. Be faithful; invent nothing."),
            ),
            ChatMessage::new(Role::User, user),
        ],
        max_tokens: SUMMARY_MAX_TOKENS,
        temperature: Some(0.2),
        ..Default::default()
    }
}

/// The end of a summarization request: the form the answer takes.
const FORM_ASK: &str = "Reply in exactly this form and nothing else:\n\
     SUMMARY: one paragraph keeping decisions, names, numbers and open questions.\n\
     FACTS:\n- one durable fact per line (names, numbers, decisions, preferences)";

/// Whether `summary` is only words of the request itself (its form, its instructions, or a
/// turn copied back), which would replace real turns with nothing new.
fn echoes_the_request(summary: &str, request: &ChatRequest) -> bool {
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let summary = norm(summary.trim_end_matches('.'));
    let asked = request
        .messages
        .iter()
        .filter(|m| m.role != Role::Assistant)
        .map(|m| norm(&m.content))
        .collect::<Vec<_>>()
        .join(" ");
    summary.is_empty() || asked.contains(&summary)
}

/// Reads `SUMMARY: … FACTS: - …` from a model answer (reasoning already removed), tolerating
/// loose formatting. `None` when there is no `SUMMARY:` part with text: prose, a refusal or
/// an empty answer is not a summary.
pub fn parse_summary(text: &str) -> Option<(String, Vec<String>)> {
    let lower = text.to_ascii_lowercase();
    let start = lower.find("summary:")? + "summary:".len();
    let text = &text[start..];
    let lower = &lower[start..];
    let (summary_part, facts_part) = match lower.find("facts:") {
        Some(i) => (&text[..i], &text[i + "facts:".len()..]),
        None => (text, ""),
    };
    let summary = summary_part
        .trim()
        .trim_end_matches(|c: char| c == '*' || c == '#' || c.is_whitespace())
        .to_string();
    if summary.is_empty() {
        return None;
    }
    let facts = facts_part
        .lines()
        .map(|l| {
            l.trim()
                .trim_start_matches(|c: char| {
                    matches!(c, '-' | '*' | '•') || c.is_ascii_digit() || c == '.' || c == ')'
                })
                .trim()
                .to_string()
        })
        .filter(|l| !l.is_empty() && l.chars().count() <= 300)
        .collect();
    Some((summary, facts))
}

/// Adds `new` facts to `facts` without duplicates (ignoring case, spacing and a final period),
/// then keeps at most `cap`, dropping the oldest.
pub fn merge_facts(facts: &mut Vec<String>, new: &[String], cap: usize) {
    fn norm(s: &str) -> String {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .trim_end_matches('.')
            .to_lowercase()
    }
    for f in new {
        let n = norm(f);
        if !n.is_empty() && !facts.iter().any(|x| norm(x) == n) {
            facts.push(f.trim().to_string());
        }
    }
    if facts.len() > cap {
        let excess = facts.len() - cap;
        facts.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(content: &str, finish: FinishReason) -> Completion {
        Completion {
            content: content.into(),
            reasoning_apart: false,
            finish,
        }
    }

    #[test]
    fn parses_summary_and_facts() {
        let (s, f) = accept_summary(
            &done(
                "<think>let me see</think>\nSUMMARY: Ann and Bo picked plan B.\nFACTS:\n- Budget is 10k\n* Launch on May 3\n\n",
                FinishReason::Stop,
            ),
            ThinkStart::Outside,
        )
        .unwrap();
        assert_eq!(s, "Ann and Bo picked plan B.");
        assert_eq!(
            f,
            vec!["Budget is 10k".to_string(), "Launch on May 3".to_string()]
        );
        assert!(parse_summary("SUMMARY:\nFACTS:\n- x").is_none());
    }

    #[test]
    fn untrustworthy_answers_are_rejected() {
        // An R1 distill without a reasoning parser, cut at the limit mid-reasoning.
        let cut = done(
            "Okay, let me weigh what SUMMARY: should say…",
            FinishReason::Length,
        );
        assert_eq!(
            accept_summary(&cut, ThinkStart::Inside),
            Err(Rejection::Unfinished("length".into()))
        );
        // Stopped, but the think block never closed.
        let open = done("Okay, SUMMARY: maybe the budget", FinishReason::Stop);
        assert_eq!(
            accept_summary(&open, ThinkStart::Inside),
            Err(Rejection::ReasoningOpen)
        );
        let open = done("<think>SUMMARY: draft", FinishReason::Stop);
        assert_eq!(
            accept_summary(&open, ThinkStart::Outside),
            Err(Rejection::ReasoningOpen)
        );
        // Refusals, prose and empty answers.
        for text in [
            "I'm sorry, I can't help with that.",
            "",
            "Just prose, no headers.",
        ] {
            assert_eq!(
                accept_summary(&done(text, FinishReason::Stop), ThinkStart::Outside),
                Err(Rejection::NoSummary),
                "{text:?}"
            );
        }
        // Reasoning that closed, or came apart as reasoning_content, is fine.
        let closed = done("weighing…</think>SUMMARY: kept", FinishReason::Stop);
        assert_eq!(
            accept_summary(&closed, ThinkStart::Inside).unwrap().0,
            "kept"
        );
        let apart = Completion {
            reasoning_apart: true,
            ..done("SUMMARY: kept", FinishReason::Stop)
        };
        assert_eq!(
            accept_summary(&apart, ThinkStart::Inside).unwrap().0,
            "kept"
        );
    }

    #[test]
    fn a_summary_that_copies_the_request_is_an_echo() {
        let anchor = Anchor::default();
        let request = ChatRequest {
            messages: vec![
                ChatMessage::new(Role::System, SUMMARY_MARKER),
                ChatMessage::new(
                    Role::User,
                    format!("Conversation to summarize:\nann: We pick plan B.\n\n{FORM_ASK}"),
                ),
            ],
            ..summary_request("English", &anchor, 0, false)
        };
        // What SmolLM2 wrote when asked for the form.
        assert!(echoes_the_request(
            "one paragraph keeping decisions, names, numbers and open questions.",
            &request
        ));
        assert!(echoes_the_request("ann: We pick   plan B", &request));
        assert!(!echoes_the_request(
            "In this conversation, Ann chose plan B.",
            &request
        ));
    }

    #[test]
    fn facts_merge_without_duplicates_and_respect_the_cap() {
        let mut facts = vec!["Budget is 10k.".to_string(), "old".to_string()];
        merge_facts(&mut facts, &["budget  is 10k".into(), "new".into()], 3);
        assert_eq!(facts, vec!["Budget is 10k.", "old", "new"]);
        merge_facts(&mut facts, &["newest".into()], 3);
        assert_eq!(facts, vec!["old", "new", "newest"]);
    }
}
