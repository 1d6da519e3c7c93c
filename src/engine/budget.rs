//! Budgets: what the servers report about themselves (cached, refreshed in the background),
//! the input budget and output cap of a turn, the shares of documents and recent turns inside
//! the input budget, and fitting a prompt into it.
//!
//! The priority order is System > Query > Documents > Recent > Older: the system prompt and
//! the question are never cut; documents get their own share (passages shrink, fewer then
//! shorter, rather than refuse a question); recent turns fill the rest, newest first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use anchorbot_platform::Author;

use super::Engine;
use crate::llm::prompt::{self, FitError, FittedPrompt};
use crate::llm::turn::ContinuationStyle;
use crate::llm::{ChatBackend, ChatRequest, ServerFacts};
use crate::retrieval::Passage;
use crate::settings::ContinuationMode;
use crate::store::Anchor;

/// How long what the servers report about themselves is trusted before a refresh.
const FACTS_TTL: Duration = Duration::from_secs(300);

/// Tokens left between the prompt and the model's context when the server reports it.
const MIN_OUTPUT_TOKENS: usize = 256;

/// What the reasoning servers report (context length, vLLM), shared by every conversation.
/// Reads never wait on a probe: a stale value is used while a background refresh runs, and
/// only the very first turn, with nothing cached, asks the servers itself.
#[derive(Default)]
pub(super) struct FactsCache {
    /// The facts and when they were read; only facts some server actually reported.
    cached: RwLock<Option<(ServerFacts, Instant)>>,
    /// A refresh is running.
    refreshing: AtomicBool,
}

impl FactsCache {
    fn get(&self) -> Option<(ServerFacts, Instant)> {
        *self.cached.read().expect("facts lock")
    }

    /// Asks the servers now and caches what they report. The pool skips endpoints that are
    /// streaming, and a round where no server answered keeps the previous facts.
    pub(super) async fn refresh(&self, llm: &dyn ChatBackend) -> ServerFacts {
        let facts = llm.facts().await;
        if facts.reported {
            *self.cached.write().expect("facts lock") = Some((facts, Instant::now()));
        }
        facts
    }
}

impl Engine {
    /// What the reasoning servers report about themselves. No lock is held while a server is
    /// asked, so one conversation's turn never waits for another's probe.
    pub(super) async fn facts(&self) -> ServerFacts {
        match self.facts.get() {
            Some((facts, at)) if at.elapsed() < FACTS_TTL => facts,
            Some((facts, _)) => {
                if !self.facts.refreshing.swap(true, Ordering::SeqCst) {
                    let cache = self.facts.clone();
                    let llm = self.llm.clone();
                    self.background.spawn(async move {
                        cache.refresh(llm.as_ref()).await;
                        cache.refreshing.store(false, Ordering::SeqCst);
                    });
                }
                facts
            }
            None => self.facts.refresh(self.llm.as_ref()).await,
        }
    }

    /// How this turn continues an answer cut at the output limit.
    pub(super) async fn continuation_style(&self) -> ContinuationStyle {
        match self.settings.reasoning.continuation {
            ContinuationMode::Prefill => ContinuationStyle::Prefill,
            ContinuationMode::Instruction => ContinuationStyle::Instruction,
            ContinuationMode::Auto if self.facts().await.all_vllm => ContinuationStyle::Prefill,
            ContinuationMode::Auto => ContinuationStyle::Instruction,
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
            Some(d) => d
                .store()
                .list(&key.to_string())
                .await
                .is_ok_and(|l| !l.is_empty()),
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
