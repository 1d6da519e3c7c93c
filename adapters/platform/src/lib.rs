//! The platform contract: what a chat platform adapter (console, Slack, Discord) gives the
//! anchorbot engine, and what the engine asks of it.
//!
//! Inbound, an adapter turns platform traffic into [`InboundEvent`]s keyed by a
//! [`ConversationKey`] and hands them to an [`EventSink`]. Outbound, the engine talks to the
//! adapter only through the [`Platform`] trait: post, edit, ephemeral answers, status and lazy
//! attachment fetches. [`StreamingReply`] builds the streamed, split and throttled reply on top of
//! those primitives, so every adapter gets the same behaviour for free.
//!
//! Nothing in here knows about LLMs, prompts or storage.
#![forbid(unsafe_code)]

pub mod arrival;
mod bounded;
pub mod budget;
pub mod doctor;
pub mod download;
mod key;
pub mod metrics;
pub mod pump;
mod recent;
pub mod redact;
mod reply;
mod split;
pub mod sync;

pub use arrival::{Arrival, REDELIVERY_QUEUE};
pub use bounded::BoundedMap;
pub use budget::{LocalBudget, Rate, RateBudget, RateKey};
pub use key::{ConversationKey, KeyError};
pub use recent::RecentIds;
pub use reply::StreamingReply;
pub use split::{fences_balanced, split_message};

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    /// Platform user id (stable).
    pub id: String,
    /// Name shown to people; used in prompts so the model can tell speakers apart.
    pub display_name: String,
}

/// A file shared with a message. The bytes are fetched lazily through [`Platform::fetch`],
/// because only the adapter holds the credentials the platform's file host wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// File name as the user shared it.
    pub name: String,
    /// MIME type the platform declared; the engine sniffs content and does not trust it.
    pub declared_mime: Option<String>,
    /// Size in bytes as the platform declared it.
    pub size: u64,
    /// Adapter-private locator (URL, file id, path). Opaque to the engine.
    pub locator: String,
}

/// A message as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingMessage {
    /// The conversation this message belongs to.
    pub key: ConversationKey,
    /// Platform event id, used to drop duplicate deliveries (Slack retries, double sockets).
    pub event_id: String,
    /// Who wrote it.
    pub author: Author,
    /// Message text, possibly a slash command such as `/status`.
    pub text: String,
    /// Files shared with the message.
    pub attachments: Vec<Attachment>,
    /// Where the reply goes (channel, thread, message being answered).
    pub reply_to: ReplyTarget,
    /// The message mentions the bot (Slack `app_mention`, a Discord mention).
    pub mentions_bot: bool,
    /// Another bot wrote it (the adapter decides whether such messages are submitted at all).
    pub from_bot: bool,
}

/// A message that was in a thread before the bot joined it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorMessage {
    /// Who wrote it.
    pub author: Author,
    /// Its text.
    pub text: String,
    /// The bot (or another bot) wrote it.
    pub from_bot: bool,
    /// Names of files shared with it (listed, not read).
    pub files: Vec<String>,
}

/// A person's verdict on one of the bot's answers (Slack's feedback buttons, a Discord
/// button), tied to the message that carried the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// The conversation the answer belongs to.
    pub key: ConversationKey,
    /// Platform event id, for de-duplication.
    pub event_id: String,
    /// Who gave it.
    pub author: Author,
    /// The answer's message (any of them, for an answer split over several).
    pub message: MessageRef,
    /// Thumbs up (true) or down.
    pub positive: bool,
    /// Where an acknowledgement goes, if any.
    pub reply_to: ReplyTarget,
}

/// A request to answer a question again (a Regenerate button on one of the bot's answers).
/// The engine finds the question by the answer's message; the new answer replaces the old one
/// in memory once it completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegenerateRequest {
    /// The conversation the answer belongs to.
    pub key: ConversationKey,
    /// Platform event id, for de-duplication.
    pub event_id: String,
    /// Who pressed it.
    pub author: Author,
    /// The answer's message (any of them, for an answer split over several).
    pub message: MessageRef,
    /// Where the new answer goes.
    pub reply_to: ReplyTarget,
}

/// A native command invocation (Slack slash command, Discord application command). Text
/// commands typed into a message arrive as [`IncomingMessage`]s instead; the engine parses both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandInvocation {
    /// The conversation the command was issued in.
    pub key: ConversationKey,
    /// Platform event id for de-duplication.
    pub event_id: String,
    /// Who issued it.
    pub author: Author,
    /// Command name without the slash, e.g. `status`.
    pub name: String,
    /// Everything after the name.
    pub args: String,
    /// Where the (usually ephemeral) answer goes.
    pub reply_to: ReplyTarget,
}

/// Everything an adapter can hand to the engine: a closed set.
/// Serialized with a `kind` tag (`{"kind":"message",…}`): the engine journals accepted events
/// so that a process that starts after a crash can answer them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InboundEvent {
    /// A message in a conversation.
    Message(IncomingMessage),
    /// A native command.
    Command(CommandInvocation),
    /// Feedback on an answer.
    Feedback(Feedback),
    /// Stop the answer being written in the conversation (a Stop button).
    Stop(StopRequest),
    /// Answer a question again (a Regenerate button).
    Regenerate(RegenerateRequest),
}

/// A request to stop the answer that is streaming in a conversation. The reply keeps what was
/// written and says it was stopped; the turn is not stored (it did not complete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequest {
    /// The conversation.
    pub key: ConversationKey,
    /// Platform event id.
    pub event_id: String,
    /// Who pressed Stop.
    pub author: Author,
    /// Where an acknowledgement goes.
    pub reply_to: ReplyTarget,
}

impl InboundEvent {
    /// The conversation the event belongs to.
    pub fn key(&self) -> &ConversationKey {
        match self {
            InboundEvent::Message(m) => &m.key,
            InboundEvent::Command(c) => &c.key,
            InboundEvent::Feedback(f) => &f.key,
            InboundEvent::Stop(r) => &r.key,
            InboundEvent::Regenerate(r) => &r.key,
        }
    }

    /// The platform's id for the event.
    pub fn event_id(&self) -> &str {
        match self {
            InboundEvent::Message(m) => &m.event_id,
            InboundEvent::Command(c) => &c.event_id,
            InboundEvent::Feedback(f) => &f.event_id,
            InboundEvent::Stop(r) => &r.event_id,
            InboundEvent::Regenerate(r) => &r.event_id,
        }
    }

    /// Where answers to this event go.
    pub fn reply_to(&self) -> &ReplyTarget {
        match self {
            InboundEvent::Message(m) => &m.reply_to,
            InboundEvent::Command(c) => &c.reply_to,
            InboundEvent::Feedback(f) => &f.reply_to,
            InboundEvent::Stop(r) => &r.reply_to,
            InboundEvent::Regenerate(r) => &r.reply_to,
        }
    }

    /// Who caused the event.
    pub fn author(&self) -> &Author {
        match self {
            InboundEvent::Message(m) => &m.author,
            InboundEvent::Command(c) => &c.author,
            InboundEvent::Feedback(f) => &f.author,
            InboundEvent::Stop(r) => &r.author,
            InboundEvent::Regenerate(r) => &r.author,
        }
    }
}

/// Where a reply is posted. Adapters fill the fields they need; the engine passes it back as is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReplyTarget {
    /// Platform channel id (Slack channel, Discord channel or thread, console name).
    pub channel: String,
    /// Thread to reply in, if the platform threads replies (Slack `thread_ts`).
    pub thread: Option<String>,
    /// The message being answered (Discord message reference, Slack ts).
    pub message: Option<String>,
    /// Adapter-private context, e.g. a Slack `response_url` or Discord interaction token.
    pub extra: Option<String>,
}

/// A message the adapter posted, so it can be edited later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    /// Channel the message lives in.
    pub channel: String,
    /// Platform message id (Slack ts, Discord snowflake, console sequence number).
    pub id: String,
}

/// A transient indicator shown while the bot works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The model is working ("thinking…").
    Thinking,
    /// A progress note for long work, e.g. "Reading report.pdf: page 12/50".
    Progress(String),
    /// Remove any indicator.
    Clear,
}

/// How a streamed reply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalState {
    /// Someone pressed Stop: the reply keeps what was written; nothing was stored.
    Stopped,
    /// The answer is complete.
    Complete,
    /// The answer was cut at the output limit.
    Truncated,
    /// The turn failed; the reply text explains why.
    Failed,
    /// A notice that is not an answer (a shared file was read): no feedback buttons.
    Notice,
}

/// What a platform allows; drives splitting and edit throttling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest message the platform accepts, in characters.
    pub max_message_chars: usize,
    /// Minimum time between two edits of one streamed reply.
    pub min_edit_interval: Duration,
}

/// Errors an adapter reports, with variants the engine can act on.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The platform asked us to slow down.
    #[error("rate limited by the platform; retry after {retry_after:?}")]
    RateLimited {
        /// How long the platform asked us to wait.
        retry_after: Duration,
    },
    /// An attachment is larger than the caller allows.
    #[error("attachment is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Actual or declared size.
        size: u64,
        /// The caller's limit.
        limit: u64,
    },
    /// The platform refused the call (permissions, unknown channel, bad request).
    #[error("the platform refused the request: {0}")]
    Rejected(String),
    /// The platform could not be reached or the transport failed.
    #[error("could not reach the platform: {0}")]
    Transport(String),
}

/// A platform's native streamed message: text is appended as it arrives, then the stream is
/// stopped and the message stays. Appends are buffered by [`StreamingReply`].
#[async_trait]
pub trait AppendStream: Send + Sync {
    /// Appends `text` (Markdown) to the message.
    async fn append(&mut self, text: &str) -> Result<(), PlatformError>;

    /// Ends the stream; returns the message that holds the text.
    async fn stop(&mut self) -> Result<MessageRef, PlatformError>;

    /// The message the stream writes into, once the platform made one (before [`stop`]), so
    /// that a process taking the answer over can replace it. `None` until then, or when the
    /// platform does not say.
    ///
    /// [`stop`]: AppendStream::stop
    fn message(&self) -> Option<MessageRef> {
        None
    }
}

/// Outbound primitives an adapter implements. The engine never learns which platform it is.
#[async_trait]
pub trait Platform: Send + Sync + 'static {
    /// What this platform allows.
    fn limits(&self) -> Limits;

    /// Posts a new message and returns a reference for later edits.
    async fn post(&self, to: &ReplyTarget, text: &str) -> Result<MessageRef, PlatformError>;

    /// Replaces the text of a message this adapter posted.
    async fn edit(&self, message: &MessageRef, text: &str) -> Result<(), PlatformError>;

    /// Answers privately to one user (command results). Platforms without private answers
    /// post normally.
    async fn ephemeral(
        &self,
        to: &ReplyTarget,
        user: &Author,
        text: &str,
    ) -> Result<(), PlatformError>;

    /// Shows or clears a transient status ("thinking…", progress notes).
    async fn status(&self, to: &ReplyTarget, status: &Status) -> Result<(), PlatformError>;

    /// Reasoning text streamed apart from the answer (for a "thinking…" view). Never part of
    /// the answer; most adapters ignore it.
    async fn reasoning(&self, _to: &ReplyTarget, _delta: &str) -> Result<(), PlatformError> {
        Ok(())
    }

    /// Called once when a reply reaches its final state, with the messages that now carry
    /// it, in order (for feedback buttons on the last one).
    async fn finished(
        &self,
        _to: &ReplyTarget,
        _state: &FinalState,
        _messages: &[MessageRef],
    ) -> Result<(), PlatformError> {
        Ok(())
    }

    /// The messages before the one being answered in `to`'s thread, oldest first, at most
    /// `limit` (the newest ones): the discussion a bot joins when it is first mentioned in a
    /// thread. Empty where the platform has no threads or the thread has no history.
    async fn history(
        &self,
        _to: &ReplyTarget,
        _limit: usize,
    ) -> Result<Vec<PriorMessage>, PlatformError> {
        Ok(Vec::new())
    }

    /// Deletes a message a reply no longer needs (a placeholder the answer replaced).
    async fn delete(&self, _message: &MessageRef) -> Result<(), PlatformError> {
        Ok(())
    }

    /// Opens the platform's native append stream for a reply to `to` (Slack's
    /// `chat.startStream`), when it has one. `Ok(None)`: the reply is posted, then edited.
    async fn open_stream(
        &self,
        _to: &ReplyTarget,
    ) -> Result<Option<Box<dyn AppendStream>>, PlatformError> {
        Ok(None)
    }

    /// Renders the engine's Markdown into what [`Platform::post`] and [`Platform::edit`] take.
    /// Runs before splitting, so the pieces are measured as the platform counts them.
    fn render(&self, markdown: &str) -> String {
        markdown.to_string()
    }

    /// Renders a streamed answer so far for its native append stream: only what later text
    /// cannot change, so that each result extends the one before and [`Platform::render`] of
    /// the final text extends the last (a stream cannot take text back). The default: all of
    /// it, rendered.
    fn render_stream(&self, markdown: &str) -> String {
        self.render(markdown)
    }

    /// How long a streamed reply to `to` should leave between two writes now (`native`: it
    /// appends to a native stream; else it edits a posted message). Adapters whose allowance
    /// is shared by every reply in flight stretch it when many reply at once, so a busy
    /// minute sends fewer, larger writes. The default: [`Limits::min_edit_interval`].
    fn write_interval(&self, _to: &ReplyTarget, _native: bool) -> Duration {
        self.limits().min_edit_interval
    }

    /// Whether the adapter is connected to its platform and taking events (for `/readyz`).
    /// A platform with no connection to lose (the console) is always connected.
    fn connected(&self) -> bool {
        true
    }

    /// Whether the adapter is standing by while another replica of the bot holds its platform
    /// connection (see [`EventSink::lead`]): it is healthy and ready to take over, so `/readyz`
    /// does not count it as disconnected.
    fn standby(&self) -> bool {
        false
    }

    /// Fetches an attachment's bytes with the adapter's own auth, refusing more than
    /// `max_bytes`.
    async fn fetch(
        &self,
        attachment: &Attachment,
        max_bytes: u64,
    ) -> Result<Vec<u8>, PlatformError>;
}

/// Why the engine did not accept an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The conversation already has its maximum of queued messages.
    #[error("this conversation has {capacity} messages waiting; try again when they are answered")]
    QueueFull {
        /// The per-conversation queue size.
        capacity: usize,
    },
    /// The engine is shutting down.
    #[error("anchorbot is shutting down")]
    ShuttingDown,
    /// No adapter of the event's platform runs in this process (its key names another
    /// platform than the adapter that sent it): a wiring mistake, not a passing state.
    #[error("no {platform} adapter runs in this process")]
    NoAdapter {
        /// The platform the event's key names.
        platform: String,
    },
    /// The event was accepted before (a redelivery, or its twin reached this or another
    /// process): it is answered once, there. Acknowledge it and drop it.
    #[error("this event was already accepted")]
    Duplicate,
}

/// Where adapters deliver inbound events. Never blocks: a full queue is reported, and the
/// engine tells the user.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Queues an event for its conversation. The receipt resolves once the event is handled.
    fn submit(&self, event: InboundEvent) -> Result<Receipt, SubmitError>;

    /// Journals the event where the engine keeps accepted events, then queues it: once this
    /// returns `Ok`, the event is answered even if this process dies before it is (the next
    /// process to start answers it). An adapter calls it before it acknowledges the event to
    /// its platform. An event accepted before is [`SubmitError::Duplicate`]. Without a journal
    /// it is [`EventSink::submit`].
    async fn accept(&self, event: InboundEvent) -> Result<Receipt, SubmitError> {
        self.submit(event)
    }

    /// Journals an event as it arrived, before the adapter acknowledges and maps it (see
    /// [`Arrival`]): once this returns `Ok`, the arrival is this process's to map and answer,
    /// and another process maps it again if this one dies first. A redelivery or a twin is
    /// [`SubmitError::Duplicate`]. Without a journal it claims nothing.
    async fn claim(&self, _arrival: &Arrival) -> Result<(), SubmitError> {
        Ok(())
    }

    /// Says what a claimed arrival became: `Some(event)` is queued (journaled in the
    /// arrival's place when its identity differs) and its receipt returned; `None` (not for the
    /// bot) ends the claim.
    async fn mapped(
        &self,
        arrival: &Arrival,
        event: Option<InboundEvent>,
    ) -> Result<Option<Receipt>, SubmitError> {
        let _ = arrival;
        event.map(|e| self.submit(e)).transpose()
    }

    /// The arrivals of `platform` that this process took over from one that died before it
    /// mapped them; the adapter maps each as if it had just arrived, then calls
    /// [`EventSink::mapped`]. Taken once per platform (`None` after, or without a journal).
    fn arrivals(&self, _platform: &str) -> Option<tokio::sync::mpsc::Receiver<Arrival>> {
        None
    }

    /// Takes `role` (e.g. `discord:gateway:{application}:{shard}`: something only one process
    /// of the bot may do at a time) for this process for `ttl`, or renews it: `true` while it
    /// is this process's. A holder that stops calling loses it `ttl` after its last call; one
    /// that gets `false` after holding it stops doing what the role guards (another process
    /// may have taken it). Without a store shared with other processes every role is this
    /// process's.
    async fn lead(&self, _role: &str, _ttl: Duration) -> bool {
        true
    }

    /// Gives `role` up (at shutdown), so a process standing by takes it at once instead of
    /// after its time to live.
    async fn resign(&self, _role: &str) {}
}

/// Resolves when a submitted event has been fully handled (reply final, turn stored).
/// Adapters that answer one message at a time (the console) wait on it; others drop it.
#[derive(Debug)]
pub struct Receipt(tokio::sync::oneshot::Receiver<()>);

impl Receipt {
    /// A receipt and the sender that completes it.
    pub fn new() -> (tokio::sync::oneshot::Sender<()>, Self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (tx, Self(rx))
    }

    /// Waits until the event is handled (or dropped by a shutdown).
    pub async fn done(self) {
        let _ = self.0.await;
    }
}

/// A command the engine understands, so adapters can register native commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    /// Name without the slash.
    pub name: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// Usage hint for the argument, if the command takes one.
    pub argument: Option<&'static str>,
}

/// A platform adapter: the outbound [`Platform`] plus the inbound loop that feeds an
/// [`EventSink`]. The engine starts it and stops it; the loop returns when its source ends.
#[async_trait]
pub trait Adapter: Send + 'static {
    /// The platform name used in this adapter's conversation keys (`console`, `slack`, …).
    fn name(&self) -> &'static str;

    /// The outbound side, used for every reply in this adapter's conversations.
    fn platform(&self) -> std::sync::Arc<dyn Platform>;

    /// Receives platform traffic and submits it until the source ends, it fails, or
    /// `shutdown` fires; then it stops taking events and returns (the app finishes the turns
    /// already submitted).
    async fn run(
        self: Box<Self>,
        sink: std::sync::Arc<dyn EventSink>,
        commands: &'static [CommandSpec],
        shutdown: Shutdown,
    ) -> Result<(), PlatformError>;
}

/// The app's shutdown signal, as adapters see it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// A signal and the sender that fires it.
    pub fn new() -> (tokio::sync::watch::Sender<bool>, Self) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Self(rx))
    }

    /// Whether shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown starts (or the app is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod journal_tests {
    use super::*;

    #[test]
    fn events_read_back_as_they_were_journaled() {
        let key =
            ConversationKey::new("slack", Some("T1"), "C2", Some("1712345678.000100")).unwrap();
        let author = Author {
            id: "U1".into(),
            display_name: "Ann".into(),
        };
        let events = vec![
            InboundEvent::Message(IncomingMessage {
                key: key.clone(),
                event_id: "C2:1712345678.000200".into(),
                author: author.clone(),
                text: "what is the rent?".into(),
                attachments: Vec::new(),
                reply_to: ReplyTarget {
                    channel: "C2".into(),
                    ..ReplyTarget::default()
                },
                mentions_bot: true,
                from_bot: false,
            }),
            InboundEvent::Command(CommandInvocation {
                key,
                event_id: "cmd:1".into(),
                author,
                name: "status".into(),
                args: String::new(),
                reply_to: ReplyTarget::default(),
            }),
        ];
        for event in events {
            let json = serde_json::to_string(&event).unwrap();
            assert!(json.contains("slack:T1/C2/1712345678.000100"), "{json}");
            let back: InboundEvent = serde_json::from_str(&json).unwrap();
            assert_eq!(back, event);
        }
        let bad = r#"{"kind":"command","key":"nope","event_id":"e","author":{"id":"u","display_name":"a"},"name":"x","args":"","reply_to":{}}"#;
        assert!(serde_json::from_str::<InboundEvent>(bad).is_err());
    }
}
