//! The turn driver: performs the I/O the turn state machine ([`crate::llm::turn`]) asks for,
//! stores the committed turn together with its event id, and ends every reply with a final
//! state, never leaving "thinking…" behind.

use std::sync::Arc;

use anchorbot_platform::sync;
use anchorbot_platform::{
    ConversationKey, FinalState, IncomingMessage, Platform, Status, StreamingReply,
};
use futures_util::StreamExt;

use super::budget::PromptParts;
use super::{Engine, Outcome, Refusal, TurnFailure};
use crate::llm::prompt;
use crate::llm::turn::{Effect, Failure, Input, Turn, TurnConfig, CUT_NOTE};
use crate::llm::{ChatRequest, ItemStream, LlmError};
use crate::ops::metrics as m_;
use crate::retrieval::Passage;
use crate::store::{now_ms, Exchange};
use tokio_util::sync::CancellationToken;

/// The longest message the engine reads, in bytes. Longer ones are refused before any
/// tokenizing: no input budget fits them anyway, and counting them would stall a worker.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The line a stopped answer ends with.
pub const STOPPED_NOTE: &str = "\n\n_(Stopped.)_";

/// The line an answer cut off by the shutdown deadline ends with.
pub const RESTART_NOTE: &str =
    "\n\n⚠️ anchorbot is restarting; this answer was cut off and not saved — ask again.";

/// A turn registered as running; unregisters itself when the turn ends, however it ends.
struct Running<'a> {
    /// The engine whose map holds it.
    engine: &'a Engine,
    /// The conversation.
    key: ConversationKey,
    /// Cancelled by a Stop.
    token: CancellationToken,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        // Turns of one conversation run one at a time, so the registered turn is this one.
        sync::lock(&self.engine.running).remove(&self.key);
    }
}

/// Passages the offline fallback quotes.
const OFFLINE_PASSAGES: usize = 3;

impl Engine {
    /// Runs one question-and-answer turn. `replaces` names a stored turn (by its `at_ms`)
    /// that this one answers again: it is left out of the prompt, and the new turn takes its
    /// place in memory only once the new answer completes.
    pub(super) async fn turn(
        &self,
        m: &IncomingMessage,
        event_id: &str,
        platform: Arc<dyn Platform>,
        replaces: Option<u64>,
    ) -> Outcome {
        let key = &m.key;
        let started = std::time::Instant::now();
        // The messages carrying the answer are noted on its journaled event, so a process that
        // takes the event over (this one died mid-answer) replaces them.
        let journal = self.store.storage().journal.clone();
        let (noted_key, noted_event) = (key.clone(), event_id.to_string());
        let mut reply =
            StreamingReply::new(platform.clone(), m.reply_to.clone()).noting(move |messages| {
                crate::replica::journal::note_reply(
                    journal.clone(),
                    &noted_key,
                    &noted_event,
                    messages,
                )
            });
        let query = m.text.trim();
        if query.len() > MAX_MESSAGE_BYTES {
            let too_long = Refusal::TooLong {
                kb: query.len() / 1024,
                max_kb: MAX_MESSAGE_BYTES / 1024,
            };
            return self.refuse(&mut reply, key, event_id, too_long).await;
        }
        let anchor = match self.store.anchor(key).await {
            Ok(mut a) => {
                // The answer being replaced would only tempt the model to repeat it.
                a.turns.retain(|e| Some(e.at_ms) != replaces);
                a
            }
            Err(e) => {
                tracing::error!(conversation = %key, error = %e, "anchor unreadable");
                let unreadable = Refusal::MemoryUnreadable(Arc::new(e));
                return self.refuse(&mut reply, key, event_id, unreadable).await;
            }
        };
        reply.status(Status::Thinking).await;
        let anchor = self.seed_from_thread(m, anchor, platform.as_ref()).await;
        let system = prompt::system_prompt(&self.prompt_cfg, &anchor);
        let (budget, max_tokens) = self.budgets().await;
        let passages = self.passages(key, query).await;
        let parts = PromptParts {
            system: &system,
            anchor: &anchor,
            author: &m.author,
            query,
            passages: &passages,
        };
        let (fitted, local_budget) = match self.fit_prompt(&parts, budget, max_tokens).await {
            Ok(f) => f,
            Err(e) => {
                return self
                    .refuse(&mut reply, key, event_id, Refusal::NoRoom(e))
                    .await
            }
        };
        tracing::debug!(conversation = %key, messages = fitted.messages.len(), tokens = fitted.tokens, dropped = fitted.dropped_turns, passages = fitted.passages, budget, max_tokens, "prompt built");
        if fitted.dropped_turns > 0 {
            tracing::info!(conversation = %key, dropped = fitted.dropped_turns, "older turns left out of the prompt");
        }
        if fitted.passages < passages.len() {
            tracing::info!(conversation = %key, retrieved = passages.len(), quoted = fitted.passages, "passages shrunk to the documents budget");
        }
        metrics::counter!(m_::TOKENS_IN).increment(fitted.tokens as u64);
        let request = ChatRequest {
            messages: fitted.messages,
            max_tokens,
            ..Default::default()
        };
        let cfg = TurnConfig {
            max_rounds: self.settings.max_rounds,
            think_start: self.settings.reasoning.think_start(),
            filter: self.settings.active_filter(),
            input_budget: local_budget,
            continuation: self.continuation_style().await,
        };
        let (mut turn, mut effects) = Turn::start(request, cfg, self.counter.clone());
        let stop = self.track_running(key);
        let mut stream: Option<ItemStream> = None;
        let mut pending: Option<Input> = None;
        let mut first_item = true;
        loop {
            for fx in std::mem::take(&mut effects) {
                match fx {
                    Effect::Request(r) => {
                        // A request still retrying can be stopped too (or cut at shutdown).
                        let opened = tokio::select! {
                            opened = self.llm.stream(&r) => opened,
                            _ = stop.token.cancelled() => {
                                return self.stopped(&mut reply, key, event_id, turn.answer_so_far()).await;
                            }
                        };
                        match opened {
                            Ok(s) => stream = Some(s),
                            Err(e) => pending = Some(Input::Failed(e)),
                        }
                    }
                    Effect::Render(text) => reply.update(&text).await,
                    Effect::Thinking => reply.status(Status::Thinking).await,
                    Effect::Reasoning(delta) => reply.reasoning(&delta).await,
                    Effect::Filtered { removed } => {
                        metrics::counter!(m_::FILTERED_CHARS).increment(removed as u64);
                        tracing::warn!(conversation = %key, removed, "language filter removed characters from the answer");
                    }
                    Effect::Commit {
                        answer,
                        truncated,
                        rounds,
                    } => {
                        let exchange = Exchange {
                            author: m.author.clone(),
                            query: query.to_string(),
                            answer: answer.clone(),
                            at_ms: now_ms(),
                            truncated,
                            replies: Vec::new(),
                            feedback: Vec::new(),
                        };
                        let at_ms = exchange.at_ms;
                        let tokens = fitted.tokens as u64;
                        let saved = self
                            .store
                            .update_marking(key, Some(event_id), |a| {
                                let before = a.turns.len();
                                a.turns.retain(|e| Some(e.at_ms) != replaces);
                                a.turns.push(exchange.clone());
                                // An answer given again is still one question asked.
                                if a.turns.len() > before {
                                    a.counters.turns_total += 1;
                                }
                                a.counters.prompt_tokens_last = tokens;
                            })
                            .await;
                        if let Err(e) = saved {
                            tracing::error!(conversation = %key, error = %e, "turn not saved");
                            let text = format!(
                                "{answer}\n\n⚠️ This answer could not be saved to memory: {e}"
                            );
                            return self
                                .fail(
                                    &mut reply,
                                    key,
                                    event_id,
                                    text,
                                    TurnFailure::NotSaved(Arc::new(e)),
                                )
                                .await;
                        }
                        metrics::counter!(m_::TOKENS_OUT)
                            .increment(self.counter.count(&answer) as u64);
                        metrics::counter!(m_::CONTINUATION_ROUNDS).increment(rounds as u64);
                        if rounds > 0 {
                            tracing::info!(conversation = %key, rounds, truncated, "answer continued past the output limit");
                        }
                        let (text, state) = if truncated {
                            (format!("{answer}{CUT_NOTE}"), FinalState::Truncated)
                        } else {
                            (answer, FinalState::Complete)
                        };
                        if let Err(e) = reply.finish(&text, state).await {
                            tracing::warn!(conversation = %key, error = %e, "final reply not delivered");
                        }
                        self.record_replies(key, at_ms, reply.messages()).await;
                        return Outcome::Answered { truncated };
                    }
                    Effect::Fail(failure) => {
                        let headline = TurnFailure::from(&failure);
                        let message = match &failure {
                            Failure::Llm { error, partial }
                                if error.is_offline() && partial.trim().is_empty() =>
                            {
                                self.offline_answer(key, query, error)
                                    .await
                                    .unwrap_or_else(|| failure.message())
                            }
                            _ => failure.message(),
                        };
                        return self
                            .fail(&mut reply, key, event_id, message, headline)
                            .await;
                    }
                }
            }
            let input = match pending.take() {
                Some(i) => i,
                None => match stream.as_mut() {
                    Some(s) => {
                        let next = tokio::select! {
                            next = s.next() => next,
                            _ = stop.token.cancelled() => {
                                return self.stopped(&mut reply, key, event_id, turn.answer_so_far()).await;
                            }
                        };
                        match next {
                            Some(Ok(item)) => {
                                if std::mem::take(&mut first_item) {
                                    metrics::histogram!(m_::FIRST_TOKEN_SECONDS)
                                        .record(started.elapsed().as_secs_f64());
                                }
                                Input::Item(item)
                            }
                            Some(Err(e)) => Input::Failed(e),
                            None => {
                                Input::Failed(LlmError::StreamCut("the stream ended early".into()))
                            }
                        }
                    }
                    None => Input::Failed(LlmError::Protocol("no stream was opened".into())),
                },
            };
            effects = turn.handle(input);
        }
    }

    /// Registers the turn streaming in `key`, so a Stop can end it; unregistered on drop.
    fn track_running(&self, key: &ConversationKey) -> Running<'_> {
        let token = CancellationToken::new();
        if self.is_cutting() {
            token.cancel();
        }
        sync::lock(&self.running).insert(key.clone(), token.clone());
        Running {
            engine: self,
            key: key.clone(),
            token,
        }
    }

    /// Ends a stopped answer: the chat keeps what was written and says it was stopped; the
    /// turn is not stored, since it did not complete.
    async fn stopped(
        &self,
        reply: &mut StreamingReply,
        key: &ConversationKey,
        event_id: &str,
        partial: &str,
    ) -> Outcome {
        let cut = self.is_cutting();
        let note = if cut { RESTART_NOTE } else { STOPPED_NOTE };
        if cut {
            tracing::warn!(conversation = %key, "answer cut off by the shutdown deadline; nothing stored");
        } else {
            tracing::info!(conversation = %key, "answer stopped; nothing stored");
        }
        let text = if partial.trim().is_empty() {
            note.trim_start().to_string()
        } else {
            format!("{}{note}", partial.trim_end())
        };
        match reply.finish(&text, FinalState::Stopped).await {
            // A cut turn stays unhandled, so a platform that redelivers it gets an answer.
            Ok(()) if !cut => self.mark_handled(key, event_id).await,
            Ok(()) => {}
            Err(e) => tracing::warn!(conversation = %key, error = %e, "stop note not delivered"),
        }
        Outcome::Stopped
    }

    /// The passages of the conversation's documents for `query`, best first (none without
    /// documents).
    async fn passages(&self, key: &ConversationKey, query: &str) -> Vec<Passage> {
        let Some(retriever) = &self.retriever else {
            return Vec::new();
        };
        let k = self.settings.documents.top_k;
        retriever.passages(key, query, k).await
    }

    /// The reply when the reasoning model is offline and the conversation has documents: the
    /// most relevant passages with their citations. `None` without passages.
    async fn offline_answer(
        &self,
        key: &ConversationKey,
        query: &str,
        error: &LlmError,
    ) -> Option<String> {
        let retriever = self.retriever.as_ref()?;
        let passages = retriever.passages(key, query, OFFLINE_PASSAGES).await;
        if passages.is_empty() {
            return None;
        }
        let mut s = format!(
            "⚠️ I can't write an answer: {}. These passages from this conversation's documents look most relevant:\n",
            error.user_reason()
        );
        for p in passages {
            let quoted: Vec<String> = p.text.trim().lines().map(|l| format!("> {l}")).collect();
            s.push_str(&format!("\n{}\n— [{}]\n", quoted.join("\n"), p.citation));
        }
        Some(s)
    }

    /// Ends a message refused before it reached the model: the user reads `reason` after a
    /// `⚠️`.
    async fn refuse(
        &self,
        reply: &mut StreamingReply,
        key: &ConversationKey,
        event_id: &str,
        reason: Refusal,
    ) -> Outcome {
        tracing::warn!(conversation = %key, %reason, "message refused");
        let message = format!("⚠️ {reason}");
        self.deliver_final(reply, key, event_id, &message).await;
        Outcome::Refused(reason)
    }

    /// Ends a failed turn: the message (which may quote a partial answer or passages) goes to
    /// the chat; the log and the outcome get only `headline`.
    async fn fail(
        &self,
        reply: &mut StreamingReply,
        key: &ConversationKey,
        event_id: &str,
        message: String,
        headline: TurnFailure,
    ) -> Outcome {
        tracing::warn!(conversation = %key, reason = %headline, "turn failed; nothing stored");
        self.deliver_final(reply, key, event_id, &message).await;
        Outcome::Failed(headline)
    }

    /// Delivers a final failure message; once the user has it, the event counts as handled.
    async fn deliver_final(
        &self,
        reply: &mut StreamingReply,
        key: &ConversationKey,
        event_id: &str,
        message: &str,
    ) {
        match reply.finish(message, FinalState::Failed).await {
            Ok(()) => self.mark_handled(key, event_id).await,
            Err(e) => {
                tracing::warn!(conversation = %key, error = %e, "failure message not delivered; a redelivery will be answered");
            }
        }
    }
}
