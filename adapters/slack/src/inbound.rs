//! Inbound: Slack's events become platform events. Socket Mode handlers (and the HTTP
//! listener) only queue what arrived and return, so every envelope is acknowledged within
//! Slack's 3 seconds however long a turn takes; one worker then maps events in arrival order
//! (asking Slack when it must, e.g. whether the bot is in a thread) and submits them.
//!
//! Where it listens:
//! - an `app_mention` is answered in that message's thread, and the thread is the
//!   conversation (`slack:TEAM/CHANNEL/THREAD_TS`);
//! - later messages in a thread the bot is in are answered without a mention;
//! - top-level DM messages share the DM's conversation (`slack:TEAM/CHANNEL`); a DM thread,
//!   an assistant thread included, is its own;
//! - its own messages, other bots' (unless configured), edits, deletes and joins are ignored.
//!
//! A Slack message's event id is `CHANNEL:TS`, so the `app_mention` and the `message` event
//! that Slack sends for one mention are one event to the engine, answered once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anchorbot_platform::pump;
use anchorbot_platform::{
    Arrival, Attachment, Author, CommandInvocation, ConversationKey, EventSink, Feedback,
    InboundEvent, IncomingMessage, MessageRef, Shutdown,
};
use async_trait::async_trait;
use slack_morphism::prelude::*;
use tokio::sync::mpsc;

use crate::client::Api;
use crate::target::{is_dm, SlackTarget};
use crate::thread::{Pager, ThreadMessage};
pub use crate::work::{Identity, Work};
use crate::SlackConfig;

/// Work waiting for the mapping worker; bounded, so a flood cannot exhaust memory.
const QUEUE: usize = 1024;

/// How long "the bot is not in this thread" is believed before Slack is asked again.
const NOT_IN_THREAD_FOR: std::time::Duration = std::time::Duration::from_secs(15);

/// Recent event ids remembered for de-duplication (across reconnects and both sockets).
const RECENT: usize = 4096;

/// The command words that also work as a mention: `@anchorbot status`.
const COMMAND_WORDS: [&str; 4] = ["clear", "files", "status", "help"];

/// Work queued for the mapper, with its claim when it has one (see [`crate::arrival`]).
#[derive(Debug)]
pub struct Queued {
    /// What Slack sent.
    pub work: Work,
    /// The claim journaled for it before it was acknowledged.
    pub arrival: Option<Arrival>,
}

/// The receiving half: claims and queues work from the handlers.
#[derive(Clone)]
pub struct Inbox {
    /// The mapper's queue, with the event ids seen lately (envelope-level de-duplication).
    queue: pump::Inbox<Queued>,
    /// Where claims are journaled. Weak: slack-morphism may keep its handlers' state (this
    /// inbox) after the adapter returned, and the engine (and its store) must not outlive the
    /// app through it; once the app is gone an offer is dropped.
    sink: std::sync::Weak<dyn EventSink>,
    /// Who the bot is, to tell what may be owed an answer.
    me: Identity,
    /// Settings (`answer_bots`).
    cfg: SlackConfig,
}

impl Inbox {
    /// Claims `work` if it may be owed an answer (one journal write, so it is answered even
    /// if this process dies before mapping it) and queues it, unless its event id was seen
    /// lately or its claim was taken (a redelivery, or its twin reached this or another
    /// replica). Returns when Slack may be told the event arrived; never waits for mapping.
    pub async fn offer(&self, event_id: Option<&str>, work: Work) {
        if let Some(id) = event_id {
            if !self.queue.fresh(id) {
                tracing::debug!(event = id, "duplicate Slack delivery dropped");
                return;
            }
        }
        let Some(sink) = self.sink.upgrade() else {
            tracing::debug!("Slack event after the adapter stopped; dropped");
            return;
        };
        let arrival = crate::arrival::of(&self.me, &self.cfg, &work);
        if let Some(a) = &arrival {
            if !pump::claim(sink.as_ref(), a).await {
                return;
            }
        }
        if let Err(e) = self.queue.queue(Queued { work, arrival }) {
            // A claimed event stays journaled: the next start of this process answers it.
            tracing::warn!(error = %e, "Slack inbound queue full; event left for a restart");
        }
    }
}

/// The mapping side: turns queued work into platform events.
pub struct Mapper {
    cfg: SlackConfig,
    api: Api,
    me: Identity,
    sink: Arc<dyn EventSink>,
    /// Threads the bot is in (it answered there), by `CHANNEL:THREAD_TS`; others are asked of
    /// Slack, and a "no" is asked again after [`NOT_IN_THREAD_FOR`].
    threads: HashMap<String, bool>,
    /// When each thread the bot is not in was last asked about.
    not_in_since: HashMap<String, std::time::Instant>,
    /// Assistant threads (the split view), by `CHANNEL:THREAD_TS`.
    assistant: HashSet<String>,
    /// The claim of the work being mapped: what it maps to is told against it.
    claim: Option<Arrival>,
}

/// A connected inbox and mapper.
pub fn channel(
    cfg: SlackConfig,
    api: Api,
    me: Identity,
    sink: Arc<dyn EventSink>,
) -> (Inbox, Mapper, mpsc::Receiver<Queued>) {
    let (queue, rx) = pump::inbox(QUEUE, RECENT);
    (
        Inbox {
            queue,
            sink: Arc::downgrade(&sink),
            me: me.clone(),
            cfg: cfg.clone(),
        },
        Mapper {
            cfg,
            api,
            me,
            sink,
            threads: HashMap::new(),
            not_in_since: HashMap::new(),
            assistant: HashSet::new(),
            claim: None,
        },
        rx,
    )
}

impl Mapper {
    /// Maps queued work until the inbox closes, or until shutdown: then nothing new is
    /// queued, and what was already acknowledged to Slack is still submitted. Events another
    /// replica claimed and died before mapping are handed here by the engine and mapped the
    /// same way.
    pub async fn run(mut self, rx: mpsc::Receiver<Queued>, shutdown: Shutdown) {
        let taken_over = self.sink.arrivals("slack");
        pump::run(&mut self, rx, taken_over, shutdown).await;
    }

    async fn handle(&mut self, q: Queued) {
        self.claim = q.arrival;
        match q.work {
            Work::Push(p) => self.push(*p).await,
            Work::Command(c) => self.command(*c).await,
            Work::Interaction(i) => self.interaction(*i).await,
        }
        // Mapped to nothing: the claim ends, nothing is owed.
        anchorbot_platform::arrival::settle(self.sink.as_ref(), self.claim.take()).await;
    }

    /// Hands `event` to the engine: against the claim of the work being mapped, or journaled
    /// now (a click).
    async fn submit(&mut self, event: InboundEvent) {
        pump::submit(self.sink.as_ref(), self.claim.take(), event).await;
    }

    fn key(&self, team: &str, channel: &str, thread: Option<&str>) -> Option<ConversationKey> {
        match ConversationKey::new("slack", Some(team), channel, thread) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!(error = %e, "Slack ids do not make a conversation key; ignored");
                None
            }
        }
    }

    async fn push(&mut self, cb: SlackPushEventCallback) {
        let team = cb.team_id.to_string();
        match cb.event {
            SlackEventCallbackBody::AppMention(e) => {
                let channel = e.channel.to_string();
                let ts = e.origin.ts.to_string();
                let thread = e.origin.thread_ts.as_ref().map(|t| t.to_string());
                let root = thread.clone().unwrap_or_else(|| ts.clone());
                self.threads.insert(format!("{channel}:{root}"), true);
                self.message(Incoming {
                    team,
                    channel,
                    ts,
                    root: Some(root),
                    user: e.user.to_string(),
                    text: e.content.text.unwrap_or_default(),
                    files: e.content.files.unwrap_or_default(),
                    mentions_bot: true,
                })
                .await;
            }
            SlackEventCallbackBody::Message(e) => self.channel_message(team, e).await,
            SlackEventCallbackBody::AssistantThreadStarted(e) => {
                let t = e.assistant_thread;
                let channel = t.channel_id.to_string();
                let thread = t.thread_ts.to_string();
                self.assistant.insert(format!("{channel}:{thread}"));
                self.threads.insert(format!("{channel}:{thread}"), true);
                self.suggest_prompts(&t.channel_id, &t.thread_ts).await;
            }
            SlackEventCallbackBody::AssistantThreadContextChanged(e) => {
                let t = e.assistant_thread;
                tracing::info!(
                    channel = %t.channel_id,
                    thread = %t.thread_ts,
                    viewing = ?t.context.channel_id,
                    "assistant thread context changed"
                );
            }
            other => {
                tracing::debug!(event = ?std::mem::discriminant(&other), "Slack event ignored")
            }
        }
    }

    /// A `message` event: answered in DMs, and in channel threads the bot is in.
    async fn channel_message(&mut self, team: String, e: SlackMessageEvent) {
        // Edits, deletes, joins and other subtypes are not questions; a file share is.
        match &e.subtype {
            None
            | Some(SlackMessageEventType::FileShare)
            | Some(SlackMessageEventType::ThreadBroadcast) => {}
            Some(other) => {
                tracing::debug!(subtype = ?other, "message subtype ignored");
                return;
            }
        }
        let user = e.sender.user.as_ref().map(|u| u.to_string());
        let own = e.sender.bot_id.as_ref().map(|b| b.to_string()) == self.me.bot_id
            && self.me.bot_id.is_some()
            || user.as_deref() == Some(self.me.bot_user.as_str());
        if own {
            return;
        }
        if e.sender.bot_id.is_some() && !self.cfg.answer_bots {
            tracing::debug!("message from another bot ignored");
            return;
        }
        let (Some(user), Some(channel)) = (user, e.origin.channel.as_ref().map(|c| c.to_string()))
        else {
            return;
        };
        let (text, files) = match e.content {
            Some(c) => (c.text.unwrap_or_default(), c.files.unwrap_or_default()),
            None => (String::new(), Vec::new()),
        };
        if text.contains(&format!("<@{}>", self.me.bot_user)) && !is_dm(&channel) {
            // The app_mention for the same message carries it.
            return;
        }
        let ts = e.origin.ts.to_string();
        let thread = e.origin.thread_ts.as_ref().map(|t| t.to_string());
        let root = if is_dm(&channel) {
            thread
        } else {
            let Some(root) = thread else {
                return;
            };
            if !self.in_thread(&channel, &root).await {
                return;
            }
            Some(root)
        };
        self.message(Incoming {
            team,
            channel,
            ts,
            root,
            user,
            text,
            files,
            mentions_bot: false,
        })
        .await;
    }

    /// Whether the bot is in the thread: it answered there (remembered), or, after a restart,
    /// Slack's `conversations.replies` shows one of its messages. The thread is read page by
    /// page until one is found ([`crate::thread::Pager`], up to its cap).
    async fn in_thread(&mut self, channel: &str, root: &str) -> bool {
        let key = format!("{channel}:{root}");
        match self.threads.get(&key) {
            Some(true) => return true,
            // Not in it when last asked: another replica may have answered there since (a
            // mention it took), so "no" is only believed for a while.
            Some(false)
                if self
                    .not_in_since
                    .get(&key)
                    .is_some_and(|t| t.elapsed() < NOT_IN_THREAD_FOR) =>
            {
                return false
            }
            _ => {}
        }
        let mut pager = Pager::new(&self.api, channel, root);
        let found = loop {
            match pager.next().await {
                Ok(Some(page)) => {
                    if page.iter().any(|m| self.is_mine(m)) {
                        break true;
                    }
                }
                Ok(None) => break false,
                Err(e) => {
                    // Not remembered: the next message asks again.
                    tracing::warn!(error = %e, "could not read the thread to see whether the bot is in it");
                    return false;
                }
            }
        };
        if !found && pager.capped() {
            tracing::info!(
                channel,
                "the thread is longer than the pages read; the bot's replies further down are not seen"
            );
        }
        if found {
            self.not_in_since.remove(&key);
        } else {
            self.not_in_since
                .insert(key.clone(), std::time::Instant::now());
        }
        self.threads.insert(key, found);
        found
    }

    /// Whether the bot wrote message `m`.
    fn is_mine(&self, m: &ThreadMessage) -> bool {
        m.user.as_deref() == Some(self.me.bot_user.as_str())
            || (self.me.bot_id.is_some() && m.bot_id == self.me.bot_id)
    }

    /// Submits a person's message, its author named (`users.info`, cached; the id when that
    /// fails).
    async fn message(&mut self, m: Incoming) {
        let Some(key) = self.key(&m.team, &m.channel, m.root.as_deref()) else {
            return;
        };
        let assistant = m
            .root
            .as_ref()
            .is_some_and(|r| self.assistant.contains(&format!("{}:{r}", m.channel)));
        let target = SlackTarget {
            team: m.team.clone(),
            user: m.user.clone(),
            assistant,
            response_url: None,
        }
        .into_target(&m.channel, m.root.as_deref(), Some(&m.ts));
        let mut text = strip_mention(&m.text, &self.me.bot_user);
        // "@anchorbot status" works like /status.
        if m.mentions_bot && COMMAND_WORDS.contains(&text.trim().to_ascii_lowercase().as_str()) {
            text = format!("/{}", text.trim().to_ascii_lowercase());
        }
        let author = self.api.names.author(&self.api, &m.user).await;
        let attachments = m
            .files
            .iter()
            .filter_map(|f| {
                let url = f.url_private_download.as_ref().or(f.url_private.as_ref())?;
                Some(Attachment {
                    name: f.name.clone().unwrap_or_else(|| f.id.to_string()),
                    declared_mime: f.mimetype.as_ref().map(|m| m.to_string()),
                    // Slack's file objects carry a size, but slack-morphism does not keep it:
                    // the download checks Content-Length and caps the body instead.
                    size: 0,
                    locator: url.to_string(),
                })
            })
            .collect();
        self.submit(InboundEvent::Message(IncomingMessage {
            key,
            event_id: format!("{}:{}", m.channel, m.ts),
            author,
            text,
            attachments,
            reply_to: target,
            mentions_bot: m.mentions_bot,
            from_bot: false,
        }))
        .await;
    }

    async fn suggest_prompts(&self, channel: &SlackChannelId, thread: &SlackTs) {
        let prompts: Vec<SlackAssistantPrompt> = self
            .cfg
            .suggested_prompts
            .iter()
            .take(4)
            .map(|p| SlackAssistantPrompt::new(p.clone(), p.clone()))
            .collect();
        if prompts.is_empty() {
            return;
        }
        let req = SlackApiAssistantThreadsSetSuggestedPromptsRequest::new(
            channel.clone(),
            thread.clone(),
            prompts,
        );
        // Prompts are a nicety: without an allowance now they are skipped rather than hold up
        // the events queued behind them.
        const METHOD: &str = "assistant.threads.setSuggestedPrompts";
        let patience = crate::rate::Patience::Wait(std::time::Duration::from_millis(250));
        if crate::rate::before_call(&self.api, METHOD, None, patience)
            .await
            .is_err()
        {
            tracing::info!("no allowance for suggested prompts; skipped");
            return;
        }
        match self
            .api
            .session()
            .assistant_threads_set_suggested_prompts(&req)
            .await
        {
            Ok(_) => {}
            Err(slack_morphism::errors::SlackClientError::RateLimitError(r)) => {
                crate::rate::after_429(&self.api, METHOD, None, r.retry_after, patience);
            }
            Err(e) => tracing::warn!(error = %e, "suggested prompts not set"),
        }
    }

    /// `/anchor status` and friends: answered privately through the command's `response_url`.
    async fn command(&mut self, c: SlackCommandEvent) {
        let text = c.text.clone().unwrap_or_default();
        let (name, args) = match text.trim().split_once(char::is_whitespace) {
            Some((n, a)) => (n.to_string(), a.trim().to_string()),
            None => (text.trim().to_string(), String::new()),
        };
        let name = if name.is_empty() {
            "help".to_string()
        } else {
            name
        };
        let team = c.team_id.to_string();
        let channel = c.channel_id.to_string();
        let Some(key) = self.key(&team, &channel, None) else {
            return;
        };
        let target = SlackTarget {
            team,
            user: c.user_id.to_string(),
            assistant: false,
            response_url: Some(c.response_url.0.to_string()),
        }
        .into_target(&channel, None, None);
        self.submit(InboundEvent::Command(CommandInvocation {
            key,
            event_id: format!("cmd:{}", c.trigger_id),
            author: Author {
                id: c.user_id.to_string(),
                display_name: format!("<@{}>", c.user_id),
            },
            name,
            args,
            reply_to: target,
        }))
        .await;
    }

    /// A click on an answer's feedback buttons.
    async fn interaction(&mut self, i: SlackInteractionEvent) {
        let SlackInteractionEvent::BlockActions(b) = i else {
            return;
        };
        let Some(action) = b
            .actions
            .iter()
            .flatten()
            .find(|a| a.action_id.to_string() == crate::platform::FEEDBACK_ACTION_ID)
        else {
            return;
        };
        let SlackInteractionActionContainer::Message(container) = &b.container else {
            return;
        };
        let Some(user) = &b.user else {
            return;
        };
        let channel = container
            .channel_id
            .as_ref()
            .map(|c| c.to_string())
            .or_else(|| b.channel.as_ref().map(|c| c.id.to_string()));
        let Some(channel) = channel else {
            return;
        };
        let thread = b
            .message
            .as_ref()
            .and_then(|m| m.origin.thread_ts.as_ref())
            .map(|t| t.to_string());
        let team = b.team.id.to_string();
        let Some(key) = self.key(&team, &channel, thread.as_deref()) else {
            return;
        };
        let message_ts = container.message_ts.to_string();
        let positive = action.value.as_deref() == Some("good");
        self.submit(InboundEvent::Feedback(Feedback {
            key,
            event_id: format!(
                "fb:{channel}:{message_ts}:{}:{}",
                user.id,
                action
                    .action_ts
                    .as_ref()
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            ),
            author: Author {
                id: user.id.to_string(),
                display_name: format!("<@{}>", user.id),
            },
            message: MessageRef {
                channel: channel.clone(),
                id: message_ts,
            },
            positive,
            reply_to: SlackTarget {
                team,
                user: user.id.to_string(),
                assistant: false,
                response_url: b.response_url.as_ref().map(|u| u.0.to_string()),
            }
            .into_target(&channel, thread.as_deref(), None),
        }))
        .await;
    }
}

#[async_trait]
impl pump::Mapper for Mapper {
    type Work = Queued;

    async fn map(&mut self, queued: Queued) {
        self.handle(queued).await;
    }

    /// Maps an event another replica claimed and died before mapping; a body this adapter
    /// cannot read ends its claim.
    async fn take_over(&mut self, arrival: Arrival) {
        match crate::arrival::work_of(&arrival) {
            Some(work) => {
                self.handle(Queued {
                    work,
                    arrival: Some(arrival),
                })
                .await
            }
            None => anchorbot_platform::arrival::settle(self.sink.as_ref(), Some(arrival)).await,
        }
    }
}

/// One Slack message, as the mapper needs it.
struct Incoming {
    team: String,
    channel: String,
    ts: String,
    /// The thread the conversation is (its root ts); `None` for a top-level DM.
    root: Option<String>,
    user: String,
    text: String,
    files: Vec<SlackFile>,
    mentions_bot: bool,
}

/// `text` without the bot's `<@UBOT>` mentions.
pub fn strip_mention(text: &str, bot_user: &str) -> String {
    text.replace(&format!("<@{bot_user}>"), "")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_stripped() {
        assert_eq!(strip_mention("<@UBOT> what is up?", "UBOT"), "what is up?");
        assert_eq!(strip_mention("hey <@UBOT>", "UBOT"), "hey");
    }
}
