//! The engine: handles one inbound event for one conversation. It routes the event (a
//! duplicate, a command, attachments, a question), and never knows which platform it serves.
//! It holds its services behind traits (the store over the storage traits, the model, the
//! documents as a [`DocumentService`]), never a concrete store or document type.
//!
//! One job per module: [`driver`] runs the turn state machine, [`budget`] sizes the prompt,
//! [`memory`] folds old turns into summaries, [`commands`] answers the commands, [`report`]
//! builds `/status`, `/files` and the line on an ingested file, [`attachments`] reads shared
//! files in the background (in the order and within the limits [`ingests`] keeps),
//! [`turn_lock`] keeps one turn at a time per conversation, [`feedback`] stores verdicts on
//! answers, [`regenerate`] answers a question again, [`outcome`] says how an event ended and
//! why.

mod attachments;
mod budget;
mod commands;
mod driver;
mod feedback;
pub mod ingests;
pub mod memory;
mod outcome;
mod regenerate;
mod report;
mod seed;
mod turn_lock;

use std::collections::HashSet;
use std::sync::Arc;

use anchorbot_platform::sync;
use anchorbot_platform::{InboundEvent, Platform};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::commands::Command;
use crate::docs::DocumentService;
use crate::llm::prompt::PromptConfig;
use crate::llm::tokens::TokenCounter;
use crate::llm::ChatBackend;
use crate::retrieval::Retriever;
use crate::settings::Settings;
use crate::store::Store;

pub use attachments::{FileError, Pending};
pub use memory::{merge_facts, parse_summary, summary_request, SummarizeError, SUMMARY_MARKER};
pub use outcome::{FilesBusy, Outcome, Refusal, TurnFailure};
pub use report::{ingest_summary, StatusReport};

/// How [`Engine::accept`] took an event.
#[derive(Debug)]
pub enum Accepted {
    /// Handled to its end.
    Done(Outcome),
    /// Its files are being read in the background; its outcome comes when they are in (and
    /// the message's own text is answered).
    Background(Pending),
}

/// The conversation engine; shared by all conversations. It holds services behind traits,
/// never a concrete one: the store (memory, journal and leases over the storage traits), the
/// reasoning model ([`ChatBackend`]), the token counter, and the conversations' documents
/// ([`DocumentService`], which is also the [`Retriever`] unless one is set apart).
pub struct Engine {
    /// This process's name among the processes on one store (host, process id, start).
    replica: String,
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
    /// Passages from a conversation's documents, for the prompt and the offline fallback.
    retriever: Option<Arc<dyn Retriever>>,
    /// The conversations' documents (ingestion, listing, clearing, limits); also the
    /// retriever, unless one was set apart.
    docs: Option<Arc<dyn DocumentService>>,
    /// What the reasoning servers report, cached and refreshed in the background.
    facts: Arc<crate::llm::facts::FactsCache>,
    /// Background work (summarization, facts refresh) to wait for at shutdown.
    background: TaskTracker,
    /// Conversations with a summarization running, so two never overlap.
    summarizing: std::sync::Mutex<HashSet<anchorbot_platform::ConversationKey>>,
    /// The turn streaming in each conversation, so a Stop can end it.
    running: std::sync::Mutex<
        std::collections::HashMap<anchorbot_platform::ConversationKey, CancellationToken>,
    >,
    /// Set when the shutdown deadline passed: running turns are cut off and new ones end at
    /// once, each telling its user to ask again.
    cutting: std::sync::atomic::AtomicBool,
    /// Messages whose files are read in the background, by conversation.
    ingests: std::sync::Mutex<ingests::Board<attachments::Job>>,
    /// Files read at the same time across conversations ([`ingests::READING_AT_ONCE`]).
    reading_slots: tokio::sync::Semaphore,
    /// One turn at a time per conversation: the worker's and the deferred ones.
    turn_locks: turn_lock::TurnLocks,
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
        let replica = replica_name();
        // On a store other processes share, a conversation's turns also take its lease there.
        let shared_turns =
            settings
                .store_location()
                .is_database()
                .then(|| turn_lock::SharedTurns {
                    leases: store.storage().leases.clone(),
                    holder: replica.clone(),
                });
        let facts = crate::llm::facts::FactsCache::new(llm.clone());
        Self {
            replica,
            settings,
            store,
            llm,
            counter,
            exact_tokens,
            prompt_cfg,
            retriever: None,
            docs: None,
            facts,
            background: TaskTracker::new(),
            summarizing: std::sync::Mutex::new(HashSet::new()),
            running: std::sync::Mutex::new(std::collections::HashMap::new()),
            cutting: std::sync::atomic::AtomicBool::new(false),
            ingests: std::sync::Mutex::new(ingests::Board::default()),
            reading_slots: tokio::sync::Semaphore::new(ingests::READING_AT_ONCE),
            turn_locks: turn_lock::TurnLocks::new(shared_turns),
        }
    }

    /// Cuts off every running turn and every turn started from now on (the shutdown deadline
    /// passed). A cut turn tells its user and stores nothing, like a stopped one. Files being
    /// read stop too, each telling its user that sharing it again resumes where it stopped.
    pub fn cut_running(&self) {
        self.cutting
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for token in sync::lock(&self.running).values() {
            token.cancel();
        }
        if let Some(docs) = &self.docs {
            docs.cancel_all_ingests();
        }
        self.board().cut_all();
    }

    /// The board of files being read (a short lock: never held across I/O).
    fn board(&self) -> std::sync::MutexGuard<'_, ingests::Board<attachments::Job>> {
        sync::lock(&self.ingests)
    }

    /// Whether turns are being cut off for shutdown.
    fn is_cutting(&self) -> bool {
        self.cutting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Replaces the retriever of document passages.
    pub fn set_retriever(&mut self, retriever: Arc<dyn Retriever>) {
        self.retriever = Some(retriever);
    }

    /// Adds the documents service; it also becomes the retriever.
    pub fn set_documents(&mut self, docs: Arc<dyn DocumentService>) {
        self.retriever = Some(docs.clone());
        self.docs = Some(docs);
    }

    /// Probes the model endpoints (so failover prefers the healthy ones) and refreshes what
    /// the servers report about themselves.
    pub async fn health_check(&self) {
        self.llm.health_check().await;
        self.facts.refresh().await;
    }

    /// This process's name among the processes on one store.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Waits for background work (summarization, files being read) to finish.
    pub async fn drain_background(&self) {
        self.background.close();
        self.background.wait().await;
        self.background.reopen();
    }

    /// Handles one event to its end, files included: the reply is final (never left
    /// "thinking…") when this returns. Summarization, if due, continues in the background.
    pub async fn handle(
        self: &Arc<Self>,
        event: InboundEvent,
        platform: Arc<dyn Platform>,
    ) -> Outcome {
        match self.accept(event, platform).await {
            Accepted::Done(outcome) => outcome,
            Accepted::Background(pending) => pending.outcome().await,
        }
    }

    /// Handles one event, except that a message's files are handed to the conversation's
    /// background lane (see [`attachments`]): this returns at once with
    /// [`Accepted::Background`], and the message's own text is answered there once its files
    /// are in. Everything else is handled to its end here.
    ///
    /// The event is recorded as handled only once its turn is committed (in the same
    /// transaction), its failure was told to the user, or its files are read, so a redelivery
    /// after a crash is answered, and answered once; a redelivery while its files are still
    /// being read is dropped as a duplicate.
    pub async fn accept(
        self: &Arc<Self>,
        event: InboundEvent,
        platform: Arc<dyn Platform>,
    ) -> Accepted {
        let key = event.key().clone();
        let event_id = event.event_id().to_string();
        match self.store.was_handled(&key, &event_id).await {
            Ok(true) => {
                tracing::info!(conversation = %key, event = %event_id, "duplicate event dropped");
                metrics::counter!(crate::ops::metrics::TURNS, "outcome" => "duplicate")
                    .increment(1);
                return Accepted::Done(Outcome::Duplicate);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not read the event log; processing anyway"),
        }
        let outcome = match event {
            InboundEvent::Message(m) => {
                let text = m.text.trim();
                if text.is_empty() && m.attachments.is_empty() {
                    Outcome::Ignored
                } else if let Some(cmd) = Command::parse(text).filter(|_| m.attachments.is_empty())
                {
                    self.command(cmd, &key, &m.reply_to, &m.author, platform)
                        .await
                } else if !m.attachments.is_empty() {
                    match self.read_in_background(m, platform).await {
                        Ok(pending) => return Accepted::Background(pending),
                        Err(outcome) => outcome,
                    }
                } else {
                    let _turn = self.turn_locks.lock(&key).await;
                    self.answer(&m, platform).await
                }
            }
            InboundEvent::Command(c) => {
                let cmd = Command::from_name(&c.name, &c.args);
                self.command(cmd, &key, &c.reply_to, &c.author, platform)
                    .await
            }
            InboundEvent::Feedback(f) => {
                let _turn = self.turn_locks.lock(&key).await;
                self.feedback(&f).await
            }
            InboundEvent::Regenerate(r) => {
                let _turn = self.turn_locks.lock(&key).await;
                let outcome = self.regenerate(&r, platform).await;
                if matches!(outcome, Outcome::Answered { .. }) {
                    self.spawn_summarize(key.clone());
                }
                outcome
            }
            InboundEvent::Stop(_) => {
                match sync::lock(&self.running).get(&key) {
                    Some(turn) => turn.cancel(),
                    None => {
                        tracing::info!(conversation = %key, "stop pressed with no answer streaming")
                    }
                }
                Outcome::Command
            }
        };
        // A committed turn marked its event in the commit itself, and a failed or refused one
        // once its message was delivered (see `driver`).
        if matches!(outcome, Outcome::Ignored | Outcome::Command) {
            self.mark_handled(&key, &event_id).await;
        }
        metrics::counter!(crate::ops::metrics::TURNS, "outcome" => outcome.label()).increment(1);
        Accepted::Done(outcome)
    }

    /// Answers a message's text (the caller holds the conversation's turn lock).
    async fn answer(
        self: &Arc<Self>,
        m: &anchorbot_platform::IncomingMessage,
        platform: Arc<dyn Platform>,
    ) -> Outcome {
        let started = std::time::Instant::now();
        let outcome = self.turn(m, &m.event_id, platform, None).await;
        metrics::histogram!(crate::ops::metrics::TURN_SECONDS)
            .record(started.elapsed().as_secs_f64());
        if matches!(outcome, Outcome::Answered { .. }) {
            self.spawn_summarize(m.key.clone());
        }
        outcome
    }

    /// Records an event as handled; a failure to record is logged (the event may then be
    /// answered again if it is redelivered, which beats losing it).
    async fn mark_handled(&self, key: &anchorbot_platform::ConversationKey, event_id: &str) {
        if let Err(e) = self.store.mark_handled(key, event_id).await {
            tracing::warn!(conversation = %key, error = %e, "could not record the event as handled");
        }
    }
}

/// A name for this process among those sharing a store: its host, process id, start time and
/// a sequence number (two engines in one process, as in tests, differ by it).
fn replica_name() -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!(
        "{host}-{}-{}-{}",
        std::process::id(),
        crate::store::now_ms(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}
