//! The engine: handles one inbound event for one conversation. It drives the turn state
//! machine (doing the I/O the machine asks for), answers commands, and folds old turns into the
//! summary buffer once the answer is delivered. It never knows which platform it serves.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorbot_platform::{
    Author, ConversationKey, FinalState, InboundEvent, IncomingMessage, Platform, ReplyTarget,
    Status, StreamingReply,
};
use futures_util::StreamExt;
use serde::Serialize;

use crate::commands::{counted, help_text, Command};
use crate::docs::{DocError, Documents};
use crate::lang_filter::ScriptFilter;
use crate::llm::{ChatBackend, ChatMessage, ChatRequest, ItemStream, LlmError, ServerFacts};
use crate::prompt::{self, PromptConfig};
use crate::settings::{ContinuationMode, Settings};
use crate::store::{now_ms, Anchor, Exchange, Store, StoreError, Summary};
use crate::tokens::TokenCounter;
use crate::turn::{ContinuationStyle, Effect, Input, Turn, TurnConfig, CUT_NOTE};
use tokio_util::task::TaskTracker;

/// How an event ended, for callers that need an exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do (empty message).
    Ignored,
    /// The event was already processed.
    Duplicate,
    /// A turn was answered and stored.
    Answered {
        /// The answer was cut at the output limit.
        truncated: bool,
    },
    /// A command was answered.
    Command,
    /// The message was refused before reaching the model (too long, memory full).
    Refused(String),
    /// The turn failed; nothing was stored.
    Failed(String),
}

/// What `/status` and `anchorbot status` show.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatusReport {
    /// Conversation key.
    pub conversation: String,
    /// Turns answered since the last reset.
    pub turns: u64,
    /// Turns still held verbatim.
    pub recent_turns: usize,
    /// Rolling summaries.
    pub summaries: usize,
    /// Summarization passes run.
    pub summarizations: u64,
    /// The key facts.
    pub key_facts: Vec<String>,
    /// Documents shared.
    pub documents: usize,
    /// Tokens of the anchored system prompt.
    pub system_prompt_tokens: usize,
    /// Tokens of the recent turns.
    pub recent_turns_tokens: usize,
    /// Budget of the recent turns before summarization.
    pub recent_turns_budget: usize,
    /// Prompt tokens of the latest turn.
    pub last_prompt_tokens: u64,
    /// The input budget.
    pub max_input_tokens: usize,
    /// The output cap.
    pub max_output_tokens: usize,
}

impl StatusReport {
    /// Human-readable form.
    pub fn render(&self) -> String {
        let mut s = format!(
            "Conversation {}\n\
             Turns: {} ({} recent, {} summarized into {})\n\
             Key facts: {}\n\
             Documents: {}\n\
             Token budget: system {} + recent turns {}/{} of max_input_tokens {}; last prompt {}; max output {}",
            self.conversation,
            self.turns,
            self.recent_turns,
            self.turns.saturating_sub(self.recent_turns as u64),
            counted(self.summaries as u64, "summary", "summaries"),
            self.key_facts.len(),
            self.documents,
            self.system_prompt_tokens,
            self.recent_turns_tokens,
            self.recent_turns_budget,
            self.max_input_tokens,
            self.last_prompt_tokens,
            self.max_output_tokens,
        );
        for f in &self.key_facts {
            s.push_str(&format!("\n  - {f}"));
        }
        s
    }
}

/// A passage from the conversation's documents, for the extractive fallback.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    /// The quoted text.
    pub text: String,
    /// The citation, e.g. `report.pdf p.3`.
    pub citation: String,
    /// Relevance score.
    pub score: f32,
}

/// Finds the most relevant passages of a conversation's documents (document retrieval plugs in
/// here). Used when the reasoning model is offline: the answer then quotes passages instead.
#[async_trait::async_trait]
pub trait Retriever: Send + Sync {
    /// The `k` best passages for `query`, from `key`'s documents only.
    async fn passages(&self, key: &ConversationKey, query: &str, k: usize) -> Vec<Passage>;
}

/// How long what the servers report about themselves is trusted.
const FACTS_TTL: Duration = Duration::from_secs(300);

/// Tokens left between the prompt and the model's context when the server reports it.
const MIN_OUTPUT_TOKENS: usize = 256;

/// The conversation engine; shared by all conversations.
pub struct Engine {
    /// Configuration.
    settings: Arc<Settings>,
    /// Durable anchors.
    store: Store,
    /// The reasoning model (a pool of endpoints).
    llm: Arc<dyn ChatBackend>,
    /// Prompt token counter: the model's own tokenizer, or cl100k as an estimate.
    counter: Arc<dyn TokenCounter>,
    /// Whether `counter` is the model's exact tokenizer (no safety margin needed).
    exact_tokens: bool,
    /// System prompt inputs.
    prompt_cfg: PromptConfig,
    /// Document passages for the offline fallback, once documents exist.
    retriever: Option<Arc<dyn Retriever>>,
    /// Shared documents (ingestion and retrieval).
    docs: Option<Arc<Documents>>,
    /// What the reasoning servers report (context length, vLLM), and when it was read.
    facts: tokio::sync::Mutex<Option<(ServerFacts, Instant)>>,
    /// Background work (summarization) to wait for at shutdown.
    background: TaskTracker,
    /// Conversations with a summarization running, so two never overlap.
    summarizing: std::sync::Mutex<HashSet<ConversationKey>>,
}

impl Engine {
    /// Assembles an engine. `exact_tokens` says whether `counter` is the model's own tokenizer.
    pub fn new(
        settings: Arc<Settings>,
        store: Store,
        llm: Arc<dyn ChatBackend>,
        counter: Arc<dyn TokenCounter>,
        exact_tokens: bool,
    ) -> Self {
        let prompt_cfg = PromptConfig {
            base_prompt: settings.base_prompt.clone(),
            language: settings.language.clone(),
        };
        Self {
            settings,
            store,
            llm,
            counter,
            exact_tokens,
            prompt_cfg,
            retriever: None,
            docs: None,
            facts: tokio::sync::Mutex::new(None),
            background: TaskTracker::new(),
            summarizing: std::sync::Mutex::new(HashSet::new()),
        }
    }

    /// Adds the document retriever used by the offline fallback.
    pub fn set_retriever(&mut self, retriever: Arc<dyn Retriever>) {
        self.retriever = Some(retriever);
    }

    /// Adds the documents service; it also becomes the offline fallback's retriever.
    pub fn set_documents(&mut self, docs: Arc<Documents>) {
        self.retriever = Some(docs.clone());
        self.docs = Some(docs);
    }

    /// The documents service, if configured.
    pub fn documents(&self) -> Option<&Arc<Documents>> {
        self.docs.as_ref()
    }

    /// Retrieved passages for `query` as a prompt block, within their own token budget; empty
    /// when the conversation has no documents or retrieval fails (which is logged).
    async fn retrieve_context(&self, key: &ConversationKey, query: &str) -> String {
        let Some(docs) = &self.docs else {
            return String::new();
        };
        let k = docs.settings().top_k;
        match docs.search(&key.to_string(), query, k).await {
            Ok(hits) => {
                let hits: Vec<(String, Option<String>, String)> = hits
                    .into_iter()
                    .map(|h| (h.citation, h.heading, h.text))
                    .collect();
                prompt::context_block(self.counter.as_ref(), &hits, docs.settings().context_tokens)
            }
            Err(e) => {
                tracing::warn!(conversation = %key, error = %e, "document retrieval failed; answering without documents");
                String::new()
            }
        }
    }

    /// Ingests one file into the conversation and lists it in the anchor.
    pub async fn ingest_file(
        &self,
        key: &ConversationKey,
        name: &str,
        bytes: &[u8],
        progress: &tokio::sync::watch::Sender<String>,
    ) -> Result<crate::docs::IngestReport, DocError> {
        let docs = self
            .docs
            .as_ref()
            .ok_or(DocError::Unsupported { mime: "any".into() })?;
        let report = docs.ingest(&key.to_string(), name, bytes, progress).await?;
        if !report.duplicate {
            let doc = report.doc.clone();
            self.store
                .update(key, |anchor| {
                    anchor.documents.retain(|d| d.id != doc.id);
                    anchor.documents.push(crate::store::DocumentRef {
                        id: doc.id.clone(),
                        name: doc.name.clone(),
                        pages: doc.pages,
                        status: doc.status.label().to_string(),
                    });
                })
                .await
                .map_err(|e| DocError::Store(e.to_string()))?;
        }
        Ok(report)
    }

    /// Ingests a message's attachments, reporting progress and a summary line each.
    async fn ingest_attachments(&self, m: &IncomingMessage, platform: &Arc<dyn Platform>) {
        for a in &m.attachments {
            let mut reply = StreamingReply::new(platform.clone(), m.reply_to.clone());
            let (text, state) = match self.ingest_attachment(m, a, platform, &reply).await {
                Ok(summary) => (summary, FinalState::Complete),
                Err(message) => (message, FinalState::Failed),
            };
            let _ = reply.finish(&text, state).await;
        }
    }

    /// Downloads and ingests one attachment, showing progress on `reply`. The error is the
    /// message for the user (and is logged).
    async fn ingest_attachment(
        &self,
        m: &IncomingMessage,
        a: &anchorbot_platform::Attachment,
        platform: &Arc<dyn Platform>,
        reply: &StreamingReply,
    ) -> Result<String, String> {
        let refuse = |what: &str, e: &dyn std::fmt::Display| {
            tracing::warn!(conversation = %m.key, file = %a.name, error = %e, "{what}");
            format!("⚠️ I can't read {}: {e}.", a.name)
        };
        let Some(docs) = &self.docs else {
            return Err(format!(
                "⚠️ I can't read shared files in this setup, so I ignored {}.",
                a.name
            ));
        };
        let limit = docs.settings().max_file_bytes();
        if a.size > limit {
            return Err(refuse(
                "file refused",
                &DocError::TooLarge {
                    size: a.size,
                    limit,
                },
            ));
        }
        reply
            .status(Status::Progress(format!("Reading {}…", a.name)))
            .await;
        let bytes = platform
            .fetch(a, limit)
            .await
            .map_err(|e| refuse("attachment download failed", &e))?;
        let (tx, mut rx) = tokio::sync::watch::channel(String::new());
        let ingest = self.ingest_file(&m.key, &a.name, &bytes, &tx);
        tokio::pin!(ingest);
        let result = loop {
            tokio::select! {
                r = &mut ingest => break r,
                changed = rx.changed() => {
                    if changed.is_ok() {
                        let note = rx.borrow_and_update().clone();
                        reply.status(Status::Progress(note)).await;
                    }
                }
            }
        };
        result
            .map(|report| report.summary())
            .map_err(|e| refuse("document not ingested", &e))
    }

    /// Probes the model endpoints so failover prefers the healthy ones.
    pub async fn health_check(&self) {
        self.llm.health_check().await;
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Waits for background work (summarization) to finish.
    pub async fn drain_background(&self) {
        self.background.close();
        self.background.wait().await;
        self.background.reopen();
    }

    /// Handles one event to its end: the reply is final (never left "thinking…") when this
    /// returns. Summarization, if due, continues in the background.
    pub async fn handle(
        self: &Arc<Self>,
        event: InboundEvent,
        platform: Arc<dyn Platform>,
    ) -> Outcome {
        let key = event.key().clone();
        match self.store.first_sighting(&key, event.event_id()) {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(conversation = %key, event = event.event_id(), "duplicate event dropped");
                return Outcome::Duplicate;
            }
            Err(e) => tracing::warn!(error = %e, "could not record event id; processing anyway"),
        }
        match event {
            InboundEvent::Message(m) => {
                let text = m.text.trim();
                if text.is_empty() && m.attachments.is_empty() {
                    return Outcome::Ignored;
                }
                if let Some(cmd) = Command::parse(text) {
                    return self
                        .command(cmd, &key, &m.reply_to, &m.author, platform)
                        .await;
                }
                if !m.attachments.is_empty() {
                    self.ingest_attachments(&m, &platform).await;
                    if text.is_empty() {
                        return Outcome::Command;
                    }
                }
                let outcome = self.turn(&m, platform).await;
                if matches!(outcome, Outcome::Answered { .. }) {
                    self.spawn_summarize(key);
                }
                outcome
            }
            InboundEvent::Command(c) => {
                let cmd = Command::from_name(&c.name, &c.args);
                self.command(cmd, &key, &c.reply_to, &c.author, platform)
                    .await
            }
        }
    }

    /// Runs summarization for `key` in the background unless one is already running.
    fn spawn_summarize(self: &Arc<Self>, key: ConversationKey) {
        if !self
            .summarizing
            .lock()
            .expect("summarizing lock")
            .insert(key.clone())
        {
            return;
        }
        let engine = self.clone();
        self.background.spawn(async move {
            if let Err(e) = engine.maybe_summarize(&key).await {
                tracing::warn!(conversation = %key, error = %e, "summarization failed; turns kept as they are");
            }
            engine.summarizing.lock().expect("summarizing lock").remove(&key);
        });
    }

    /// What the reasoning servers report about themselves (cached for a few minutes once a
    /// server has answered, so a server down at the first turn is asked again next turn).
    async fn facts(&self) -> ServerFacts {
        let mut cached = self.facts.lock().await;
        if let Some((facts, at)) = *cached {
            if at.elapsed() < FACTS_TTL {
                return facts;
            }
        }
        let facts = self.llm.facts().await;
        *cached = facts.reported.then(|| (facts, Instant::now()));
        facts
    }

    /// How this turn continues an answer cut at the output limit.
    async fn continuation_style(&self) -> ContinuationStyle {
        match self.settings.reasoning.continuation {
            ContinuationMode::Prefill => ContinuationStyle::Prefill,
            ContinuationMode::Instruction => ContinuationStyle::Instruction,
            ContinuationMode::Auto if self.facts().await.all_vllm => ContinuationStyle::Prefill,
            ContinuationMode::Auto => ContinuationStyle::Instruction,
        }
    }

    /// Input budget and output cap for a turn: the configured limits, shrunk so input plus
    /// output fit the server's context when it reports one.
    async fn budgets(&self) -> (usize, usize) {
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
    fn usable(&self, budget: usize) -> usize {
        if self.exact_tokens {
            budget
        } else {
            ((budget as f64) * (1.0 - self.settings.token_margin)) as usize
        }
    }

    /// The recent turns' token budget in effect: the configured one, but never more than two
    /// thirds of what `input` leaves after the system prompt (the rest is for the query), so
    /// old turns are folded into the summary before truncation would have to drop them from
    /// the prompt unread.
    fn recent_budget(&self, input: usize, system_tokens: usize) -> usize {
        self.settings
            .recent_turns_tokens
            .min(self.usable(input).saturating_sub(system_tokens) * 2 / 3)
    }

    /// Tokens of the anchored system prompt built from `anchor`.
    fn system_tokens(&self, anchor: &crate::store::Anchor) -> usize {
        prompt::message_tokens(
            self.counter.as_ref(),
            &prompt::system_prompt(&self.prompt_cfg, anchor),
        )
    }

    /// Fits the prompt: locally with the counter (less the safety margin when it is only an
    /// estimate), then, when the server can count exactly, shrunk until the server agrees.
    #[allow(clippy::too_many_arguments)] // the prompt's parts, each a distinct input
    async fn fit_prompt(
        &self,
        system: &str,
        anchor: &crate::store::Anchor,
        author: &Author,
        query: &str,
        context: &str,
        budget: usize,
        max_tokens: usize,
    ) -> Result<(prompt::FittedPrompt, usize), prompt::FitError> {
        let mut local = self.usable(budget);
        let mut attempts = 0;
        loop {
            let fitted = prompt::fit(
                self.counter.as_ref(),
                system,
                &anchor.turns,
                author,
                query,
                context,
                local,
            )?;
            attempts += 1;
            if !self.settings.reasoning.remote_tokenize || attempts > 4 {
                return Ok((fitted, local));
            }
            let request = ChatRequest {
                messages: fitted.messages.clone(),
                max_tokens,
                temperature: None,
                continue_final: false,
            };
            match self.llm.count_prompt(&request).await {
                Some(exact) if exact > budget && fitted.dropped_turns < anchor.turns.len() => {
                    // Shrink in proportion to how far the estimate was off.
                    tracing::debug!(exact, budget, local, "server count over budget; shrinking");
                    local = ((local as f64) * (budget as f64) / (exact as f64)) as usize;
                    local = local.saturating_sub(16);
                }
                Some(exact) if exact > budget => {
                    // Even with no history the server counts too many tokens.
                    let cut = exact - budget;
                    return Err(prompt::FitError::QueryTooLong {
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

    /// Runs one question-and-answer turn.
    async fn turn(&self, m: &IncomingMessage, platform: Arc<dyn Platform>) -> Outcome {
        let key = &m.key;
        let mut reply = StreamingReply::new(platform, m.reply_to.clone());
        let anchor = match self.store.anchor(key) {
            Ok(a) => a,
            Err(e) => {
                return fail(
                    &mut reply,
                    key,
                    format!("⚠️ I could not read this conversation's memory: {e}"),
                )
                .await
            }
        };
        let system = prompt::system_prompt(&self.prompt_cfg, &anchor);
        let query = m.text.trim();
        reply.status(Status::Thinking).await;
        let (budget, max_tokens) = self.budgets().await;
        let context = self.retrieve_context(key, query).await;
        let (fitted, local_budget) = match self
            .fit_prompt(
                &system, &anchor, &m.author, query, &context, budget, max_tokens,
            )
            .await
        {
            Ok(f) => f,
            Err(e) => {
                let msg = format!("⚠️ {e}");
                tracing::warn!(conversation = %key, reason = %e, "message refused");
                let _ = reply.finish(&msg, FinalState::Failed).await;
                return Outcome::Refused(msg);
            }
        };
        tracing::debug!(conversation = %key, messages = fitted.messages.len(), tokens = fitted.tokens, dropped = fitted.dropped_turns, budget, max_tokens, "prompt built");
        if fitted.dropped_turns > 0 {
            tracing::info!(conversation = %key, dropped = fitted.dropped_turns, "older turns left out of the prompt");
        }
        let request = ChatRequest {
            messages: fitted.messages,
            max_tokens,
            temperature: None,
            continue_final: false,
        };
        let cfg = TurnConfig {
            max_rounds: self.settings.max_rounds,
            think_start: self.settings.reasoning.think_start(),
            filter: self.settings.active_filter(),
            input_budget: local_budget,
            continuation: self.continuation_style().await,
        };
        let (mut turn, mut effects) = Turn::start(request, cfg, self.counter.clone());
        let mut stream: Option<ItemStream> = None;
        let mut pending: Option<Input> = None;
        let mut failure: Option<LlmError> = None;
        loop {
            for fx in std::mem::take(&mut effects) {
                match fx {
                    Effect::Request(r) => match self.llm.stream(&r).await {
                        Ok(s) => stream = Some(s),
                        Err(e) => pending = Some(Input::Failed(e)),
                    },
                    Effect::Render(text) => reply.update(&text).await,
                    Effect::Thinking => reply.status(Status::Thinking).await,
                    Effect::Reasoning(delta) => reply.reasoning(&delta).await,
                    Effect::Filtered { removed } => {
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
                        };
                        let tokens = fitted.tokens as u64;
                        let saved = self
                            .store
                            .update(key, |a| {
                                a.turns.push(exchange.clone());
                                a.counters.turns_total += 1;
                                a.counters.prompt_tokens_last = tokens;
                            })
                            .await;
                        if let Err(e) = saved {
                            return fail(
                                &mut reply,
                                key,
                                format!(
                                    "{answer}\n\n⚠️ This answer could not be saved to memory: {e}"
                                ),
                            )
                            .await;
                        }
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
                        return Outcome::Answered { truncated };
                    }
                    Effect::Fail { message } => {
                        let message = match &failure {
                            Some(e) if e.is_offline() => {
                                self.offline_answer(key, query, e, message).await
                            }
                            _ => message,
                        };
                        return fail(&mut reply, key, message).await;
                    }
                }
            }
            let input = match pending.take() {
                Some(i) => i,
                None => match stream.as_mut() {
                    Some(s) => match s.next().await {
                        Some(Ok(item)) => Input::Item(item),
                        Some(Err(e)) => Input::Failed(e),
                        None => Input::Failed(LlmError::StreamCut("the stream ended early".into())),
                    },
                    None => Input::Failed(LlmError::Protocol("no stream was opened".into())),
                },
            };
            if let Input::Failed(e) = &input {
                failure = Some(e.clone());
            }
            effects = turn.handle(input);
        }
    }

    /// The reply when the reasoning model is offline: the most relevant document passages with
    /// their citations when the conversation has documents, else `message`.
    async fn offline_answer(
        &self,
        key: &ConversationKey,
        query: &str,
        error: &LlmError,
        message: String,
    ) -> String {
        let Some(retriever) = &self.retriever else {
            return message;
        };
        let passages = retriever.passages(key, query, 3).await;
        if passages.is_empty() {
            return message;
        }
        let mut s = format!(
            "⚠️ The reasoning model is offline ({error}), so I can't write an answer. \
             These passages from this conversation's documents look most relevant:\n"
        );
        for p in passages {
            let quoted: Vec<String> = p.text.trim().lines().map(|l| format!("> {l}")).collect();
            s.push_str(&format!("\n{}\n— [{}]\n", quoted.join("\n"), p.citation));
        }
        s
    }

    /// Answers a command privately.
    async fn command(
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
                tracing::error!(conversation = %key, error = %e, "command failed");
                format!("⚠️ The command failed: {e}")
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
    ) -> Result<String, StoreError> {
        Ok(match cmd {
            Command::Clear => {
                let before = self.store.anchor(key)?;
                let (docs, chunks) = match &self.docs {
                    Some(d) => d.store().clear(&key.to_string()).unwrap_or_else(|e| {
                        tracing::error!(conversation = %key, error = %e, "documents not cleared");
                        (0, 0)
                    }),
                    None => (0, 0),
                };
                self.store.reset(key).await?;
                tracing::info!(conversation = %key, docs, chunks, "conversation cleared");
                format!(
                    "Cleared this conversation: {}, {}, {} and {} ({}) removed.",
                    counted(before.counters.turns_total, "turn", "turns"),
                    counted(before.summaries.len() as u64, "summary", "summaries"),
                    counted(before.facts.len() as u64, "key fact", "key facts"),
                    counted(docs as u64, "document", "documents"),
                    counted(chunks as u64, "chunk", "chunks"),
                )
            }
            Command::Files => self.files_text(key),
            Command::Status => self.status(key)?.render(),
            Command::Help => help_text(),
            Command::Unknown(name) => format!("Unknown command /{name}.\n{}", help_text()),
        })
    }

    /// The `/files` listing: every document with its pages, status and OCR engine.
    pub fn files_text(&self, key: &ConversationKey) -> String {
        let docs = match &self.docs {
            Some(d) => d.store().list(&key.to_string()).unwrap_or_default(),
            None => Vec::new(),
        };
        if docs.is_empty() {
            return "No documents in this conversation. Share a file to add one.".to_string();
        }
        let mut s = format!("{}:", counted(docs.len() as u64, "document", "documents"));
        for d in &docs {
            s.push_str(&format!(
                "\n- {} ({}, {}, {}): {}",
                d.name,
                d.mime,
                d.pages_counted(),
                counted(d.chunks.into(), "chunk", "chunks"),
                d.status.label()
            ));
            let engines = d.ocr_engines();
            if !engines.is_empty() {
                let fallback = if engines.iter().any(|e| e == "tesseract") {
                    " (fallback: the vision model was unavailable)"
                } else {
                    ""
                };
                s.push_str(&format!("; OCR by {}{fallback}", engines.join(", ")));
            }
            let failed = d.failed_pages();
            if !failed.is_empty() {
                s.push_str(&format!(
                    "; unread pages: {}",
                    failed
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        s
    }

    /// The status of a conversation.
    pub fn status(&self, key: &ConversationKey) -> Result<StatusReport, StoreError> {
        let a = self.store.anchor(key)?;
        let c = self.counter.as_ref();
        let system_prompt_tokens = self.system_tokens(&a);
        Ok(StatusReport {
            conversation: key.to_string(),
            turns: a.counters.turns_total,
            recent_turns: a.turns.len(),
            summaries: a.summaries.len(),
            summarizations: a.counters.summarizations,
            key_facts: a.facts.clone(),
            documents: match &self.docs {
                Some(d) => d
                    .store()
                    .list(&key.to_string())
                    .map(|l| l.len())
                    .unwrap_or(0),
                None => a.documents.len(),
            },
            system_prompt_tokens,
            recent_turns_tokens: a.turns.iter().map(|e| prompt::exchange_tokens(c, e)).sum(),
            recent_turns_budget: self
                .recent_budget(self.settings.max_input_tokens, system_prompt_tokens),
            last_prompt_tokens: a.counters.prompt_tokens_last,
            max_input_tokens: self.settings.max_input_tokens,
            max_output_tokens: self.settings.max_output_tokens,
        })
    }

    /// Folds the oldest turns into the summary buffer when the recent turns outgrow their
    /// budget. Runs after the reply is delivered; a failure keeps the turns untouched.
    pub async fn maybe_summarize(&self, key: &ConversationKey) -> Result<bool, SummarizeError> {
        let anchor = self.store.anchor(key)?;
        let c = self.counter.as_ref();
        let costs: Vec<usize> = anchor
            .turns
            .iter()
            .map(|e| prompt::exchange_tokens(c, e))
            .collect();
        // Against the input budget in effect, which a server's context length may shrink.
        let budget = self.recent_budget(self.budgets().await.0, self.system_tokens(&anchor));
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
        let request = summary_request(&self.settings.language, &anchor, fold, merge_all);
        let (text, _) = self.llm.complete(&request).await?;
        let (summary, new_facts) = parse_summary(&text).ok_or(SummarizeError::Unparseable)?;
        // Memory is re-injected into every prompt: keep filtered scripts out of it too.
        let mut filter = ScriptFilter::new(&self.settings.active_filter());
        let summary = filter.push(&summary).trim().to_string();
        let new_facts: Vec<String> = new_facts
            .iter()
            .map(|f| filter.push(f).trim().to_string())
            .filter(|f| !f.is_empty())
            .collect();
        if summary.is_empty() {
            return Err(SummarizeError::Unparseable);
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
            })
            .await?;
        tracing::info!(conversation = %key, folded = fold, summaries = updated.summaries.len(), facts = updated.facts.len(), "summarized older turns");
        Ok(true)
    }
}

/// Summarization failures; none of them lose data.
#[derive(Debug, thiserror::Error)]
pub enum SummarizeError {
    /// The model could not be asked.
    #[error("the model could not summarize: {0}")]
    Llm(#[from] LlmError),
    /// The answer had no summary in it.
    #[error("the model's summary could not be read")]
    Unparseable,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Delivers a failed turn's final message; the outcome and the log get only its headline.
async fn fail(reply: &mut StreamingReply, key: &ConversationKey, message: String) -> Outcome {
    let reason = headline(&message);
    tracing::warn!(conversation = %key, %reason, "turn failed; nothing stored");
    if let Err(e) = reply.finish(&message, FinalState::Failed).await {
        tracing::warn!(conversation = %key, error = %e, "failure message not delivered");
    }
    Outcome::Failed(reason)
}

/// The one line that says why a turn failed: the `⚠️` notice when there is one, else the
/// first line, capped. A failure message can also carry the partial answer or quoted
/// document passages, which belong in the chat, not in logs or on stderr.
pub fn headline(message: &str) -> String {
    const MAX_CHARS: usize = 300;
    let line = match message.find('⚠') {
        Some(i) => &message[i..],
        None => message.trim_start(),
    };
    let line = line
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches(['⚠', '\u{fe0f}', ' ']);
    match line.char_indices().nth(MAX_CHARS) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

/// Marker that opens every summarization prompt (tests and logs recognise it).
pub const SUMMARY_MARKER: &str = "You maintain the long-term memory of a team conversation.";

/// Builds the summarization request for the `fold` oldest turns.
pub fn summary_request(
    language: &str,
    anchor: &Anchor,
    fold: usize,
    merge_all: bool,
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
    user.push_str(
        "\nReply in exactly this form and nothing else:\n\
         SUMMARY: one paragraph keeping decisions, names, numbers and open questions.\n\
         FACTS:\n- one durable fact per line (names, numbers, decisions, preferences)",
    );
    ChatRequest {
        messages: vec![
            ChatMessage::new(
                "system",
                format!("{SUMMARY_MARKER} Write in {language}. Be faithful; invent nothing."),
            ),
            ChatMessage::new("user", user),
        ],
        max_tokens: 1024,
        temperature: Some(0.2),
        continue_final: false,
    }
}

/// Reads `SUMMARY: … FACTS: - …` from a model answer, tolerating reasoning blocks and loose
/// formatting. `None` when no summary text is found.
pub fn parse_summary(text: &str) -> Option<(String, Vec<String>)> {
    let text = match text.rfind("</think>") {
        Some(i) => &text[i + "</think>".len()..],
        None => text,
    };
    let lower = text.to_ascii_lowercase();
    let (summary_part, facts_part) = match lower.find("facts:") {
        Some(i) => (&text[..i], &text[i + "facts:".len()..]),
        None => (text, ""),
    };
    let summary_part = match summary_part.to_ascii_lowercase().find("summary:") {
        Some(i) => &summary_part[i + "summary:".len()..],
        None => summary_part,
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

    #[test]
    fn failure_headlines_leave_answers_and_passages_out() {
        assert_eq!(
            headline("half an ans\n\n⚠️ The answer broke off and was not saved: HTTP 500"),
            "The answer broke off and was not saved: HTTP 500"
        );
        assert_eq!(
            headline("⚠️ The reasoning model is offline, so I can't write an answer. These passages look most relevant:\n\n> secret clause\n— [a.pdf p.1]"),
            "The reasoning model is offline, so I can't write an answer. These passages look most relevant:"
        );
        assert_eq!(headline("  plain reason\nmore"), "plain reason");
        let long = "é".repeat(400);
        assert_eq!(headline(&long).chars().count(), 301);
    }

    #[test]
    fn parses_summary_and_facts() {
        let (s, f) = parse_summary(
            "<think>let me see</think>\nSUMMARY: Ann and Bo picked plan B.\nFACTS:\n- Budget is 10k\n* Launch on May 3\n\n",
        )
        .unwrap();
        assert_eq!(s, "Ann and Bo picked plan B.");
        assert_eq!(
            f,
            vec!["Budget is 10k".to_string(), "Launch on May 3".to_string()]
        );
        let (s, f) = parse_summary("Just prose, no headers.").unwrap();
        assert_eq!(s, "Just prose, no headers.");
        assert!(f.is_empty());
        assert!(parse_summary("SUMMARY:\nFACTS:\n- x").is_none());
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
