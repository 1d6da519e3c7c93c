//! Budgets: what the servers report about themselves (through the shared [`FactsCache`]),
//! the input budget and output cap of a turn, the shares of documents and recent turns
//! inside the input budget, and fitting a prompt into it.
//!
//! The priority order is System > Query > Documents > Recent > Older: the system prompt and
//! the question are never cut; documents get their own share (passages shrink, fewer then
//! shorter, rather than refuse a question); recent turns fill the rest, newest first.

use std::sync::Arc;

use anchorbot_platform::Author;

use super::Engine;
use crate::llm::facts::FactsCache;
use crate::llm::prompt::{self, FitError, FittedPrompt};
use crate::llm::turn::ContinuationStyle;
use crate::llm::{ChatRequest, ServerFacts};
use crate::retrieval::Passage;
use crate::store::Anchor;

/// Tokens left between the prompt and the model's context when the server reports it.
const MIN_OUTPUT_TOKENS: usize = 256;

impl Engine {
    /// Replaces the server-facts cache with `facts`, so the engine and the reranker share one.
    pub fn set_facts(&mut self, facts: Arc<FactsCache>) {
        self.facts = facts;
    }

    /// What the reasoning servers report about themselves (see [`FactsCache::get`]).
    pub(super) async fn facts(&self) -> ServerFacts {
        self.facts.get().await
    }

    /// How this turn continues an answer cut at the output limit: in place when every
    /// server of the role resumes a final assistant message itself (each client puts its own
    /// wire form on the request), else by instruction.
    pub(super) async fn continuation_style(&self) -> ContinuationStyle {
        if self.facts().await.native_resume {
            ContinuationStyle::Prefill
        } else {
            ContinuationStyle::Instruction
        }
    }

    /// Input budget and output cap for a turn: the configured limits, shrunk so input plus
    /// output fit the server's context when it reports one.
    pub(super) async fn budgets(&self) -> (usize, usize) {
        let mut input = self.settings.max_input_tokens;
        let mut output = self.settings.max_output_tokens;
        if let Some(ctx) = self.facts().await.context_length.map(|c| c as usize) {
            if output + MIN_OUTPUT_TOKENS > ctx {
                output = (ctx / 4).max(1);
            }
            input = input.min(ctx - output);
        }
        (input, output)
    }

    /// The part of an input budget the local counter may fill: all of it when counts are exact,
    /// less the safety margin when they are estimates.
    pub(super) fn usable(&self, budget: usize) -> usize {
        if self.exact_tokens {
            budget
        } else {
            ((budget as f64) * (1.0 - self.settings.token_margin)) as usize
        }
    }

    /// The documents' share of an input budget whose system prompt costs `system_tokens`,
    /// before the question: see [`prompt::documents_room`].
    pub(super) fn documents_budget(&self, input: usize, system_tokens: usize) -> usize {
        prompt::documents_room(
            self.usable(input).saturating_sub(system_tokens),
            self.settings.documents.context_tokens,
        )
    }

    /// The recent turns' token budget in effect: the configured one, but never more than two
    /// thirds of what `input` leaves after the system prompt and, when the conversation has
    /// documents, their share (the rest is for the query), so old turns are folded into the
    /// summary before truncation would have to drop them from the prompt unread.
    pub(super) fn recent_budget(
        &self,
        input: usize,
        system_tokens: usize,
        has_docs: bool,
    ) -> usize {
        let docs = if has_docs {
            self.documents_budget(input, system_tokens)
        } else {
            0
        };
        self.settings.recent_turns_tokens.min(
            self.usable(input)
                .saturating_sub(system_tokens)
                .saturating_sub(docs)
                * 2
                / 3,
        )
    }

    /// Whether the conversation has documents (for budgets).
    pub(super) async fn has_documents(&self, key: &anchorbot_platform::ConversationKey) -> bool {
        match &self.docs {
            Some(d) => d.list(key).await.is_ok_and(|l| !l.is_empty()),
            None => false,
        }
    }

    /// Tokens of the anchored system prompt built from `anchor`.
    pub(super) fn system_tokens(&self, anchor: &Anchor) -> usize {
        prompt::message_tokens(
            self.counter.as_ref(),
            &prompt::system_prompt(&self.prompt_cfg, anchor),
        )
    }

    /// Fits the prompt: locally with the counter (less the safety margin when it is only an
    /// estimate), then, when the server can count exactly, shrunk until the server agrees.
    /// Returns the prompt and the local budget it was fitted to.
    pub(super) async fn fit_prompt(
        &self,
        parts: &PromptParts<'_>,
        budget: usize,
        max_tokens: usize,
    ) -> Result<(FittedPrompt, usize), FitError> {
        let mut local = self.usable(budget);
        let mut attempts = 0;
        loop {
            let fitted = prompt::fit(
                self.counter.as_ref(),
                &prompt::PromptInput {
                    system: parts.system,
                    turns: &parts.anchor.turns,
                    author: parts.author,
                    query: parts.query,
                    passages: parts.passages,
                    documents_cap: self.settings.documents.context_tokens,
                },
                local,
            )?;
            attempts += 1;
            if !self.settings.reasoning.remote_tokenize || attempts > 4 {
                return Ok((fitted, local));
            }
            let request = ChatRequest {
                messages: fitted.messages.clone(),
                max_tokens,
                ..Default::default()
            };
            match self.llm.count_prompt(&request).await {
                Some(exact)
                    if exact > budget
                        && (fitted.dropped_turns < parts.anchor.turns.len()
                            || fitted.passages > 0) =>
                {
                    // Shrink in proportion to how far the estimate was off.
                    tracing::debug!(exact, budget, local, "server count over budget; shrinking");
                    local = ((local as f64) * (budget as f64) / (exact as f64)) as usize;
                    local = local.saturating_sub(16);
                }
                Some(exact) if exact > budget => {
                    // Even with no history and no passages the server counts too many tokens.
                    let cut = exact - budget;
                    return Err(FitError::QueryTooLong {
                        query_tokens: exact,
                        room: budget,
                        cut,
                        cut_words: (cut * 3).div_ceil(4),
                    });
                }
                _ => return Ok((fitted, local)),
            }
        }
    }
}

/// The parts a turn's prompt is built from.
pub(super) struct PromptParts<'a> {
    /// The anchored system prompt.
    pub system: &'a str,
    /// The conversation's memory (its recent turns go into the prompt).
    pub anchor: &'a Anchor,
    /// Who asks.
    pub author: &'a Author,
    /// The question.
    pub query: &'a str,
    /// Retrieved passages, best first.
    pub passages: &'a [Passage],
}
