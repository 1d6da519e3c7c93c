//! Inbound: gateway events become platform events. serenity's handlers only queue what
//! arrived (acknowledging button presses and deferring slash commands first, so Discord's 3
//! seconds are met whatever the mapper is waiting for) and return; one worker then maps events in arrival order, asking Discord when it
//! must (whether a channel is a thread, and whose), and submits them.
//!
//! Where it listens:
//! - a guild message that mentions the bot gets a thread created from it (unless
//!   `reply_in_thread` is off, or it is already in a thread), and the thread is the
//!   conversation (`discord:GUILD/PARENT/THREAD`);
//! - later messages in a thread the bot owns are answered without a mention, after a restart
//!   too (the thread's `owner_id` is read once and remembered);
//! - a mention in a thread the bot does not own makes that thread a conversation (the engine
//!   seeds it from the thread's history); later messages there need a mention again, so the
//!   bot does not answer every message of a discussion it was asked into once;
//! - forum posts are threads, so a mention in one is the same case;
//! - DMs are answered (`discord:DM_CHANNEL`);
//! - its own messages, other bots' and webhooks', and system messages are ignored.
//!
//! A message's event id is its snowflake; an interaction's is `i:ID`.
//!
//! A message for the bot is claimed (see [`crate::arrival`]) before anything is done about it
//! on Discord, and what it maps to is told against the claim; Discord does not deliver an
//! event again to a new session, so a process that dies in between leaves the claim for the
//! replica that takes over, which maps the message again ([`Mapper::run`]). Creating the
//! thread again is harmless: Discord refuses a second thread from one message (code 160004),
//! and the first one has the message's id.

use std::sync::Arc;

use anchorbot_platform::pump;
use anchorbot_platform::{
    Arrival, Attachment, Author, BoundedMap, CommandInvocation, ConversationKey, EventSink,
    Feedback, InboundEvent, IncomingMessage, MessageRef, RegenerateRequest, Shutdown, StopRequest,
};
use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};
use serenity::all::{
    ChannelType, CommandDataOptionValue, CommandInteraction, ComponentInteraction, Message,
    PartialChannel, User,
};
use tokio::sync::mpsc;

pub use crate::identity::Identity;
use crate::rest::{Failure, Rest, BAD_ID, GOOD_ID, REGENERATE_ID, STOP_ID, THREAD_ALREADY_CREATED};
use crate::route::{considered, route, Route};
pub use crate::route::{conversation_key, ChannelInfo};
use crate::target::{DiscordTarget, InteractionRef};
use crate::DiscordConfig;

/// Work waiting for the mapping worker; bounded, so a flood cannot exhaust memory.
const QUEUE: usize = 1024;
/// Recent event ids remembered for de-duplication (a RESUME can replay events).
const RECENT: usize = 4096;
/// Messages kept while READY has not been mapped yet.
const EARLY: usize = 64;
/// Channels whose kind and owner are remembered.
const CHANNELS: usize = 4096;
/// Characters of a thread's name taken from the question (Discord allows 100).
const THREAD_NAME_CHARS: usize = 80;
/// Minutes of inactivity before a created thread hides (Discord's one-day choice).
const AUTO_ARCHIVE_MINUTES: u32 = 1440;
/// The command words that also work as a mention: `@anchorbot status`.
const COMMAND_WORDS: [&str; 4] = ["clear", "files", "status", "help"];

/// Something Discord sent, waiting to be mapped.
#[derive(Debug)]
pub enum Work {
    /// The gateway session is ready: who the bot is.
    Ready(Identity),
    /// A MESSAGE_CREATE.
    Message(Box<Message>),
    /// A slash command; `deferred` when a type 5 response was already sent.
    Command(Box<CommandInteraction>, bool),
    /// A button press, already acknowledged.
    Component(Box<ComponentInteraction>),
}

/// The receiving half: queues work from the handlers ([`pump::Inbox`]).
#[derive(Clone)]
pub struct Inbox(pump::Inbox<Work>);

impl Inbox {
    /// Whether `id` is new; records it. A repeat is a replayed delivery.
    pub fn fresh(&self, id: &str) -> bool {
        let fresh = self.0.fresh(id);
        if !fresh {
            tracing::debug!(event = id, "duplicate Discord delivery dropped");
        }
        fresh
    }

    /// Queues `work`; never waits.
    pub fn queue(&self, work: Work) {
        if let Err(e) = self.0.queue(work) {
            tracing::warn!(error = %e, "Discord inbound queue full; event dropped");
        }
    }
}

/// The mapping side: turns queued work into platform events.
pub struct Mapper {
    cfg: DiscordConfig,
    rest: Rest,
    sink: Arc<dyn EventSink>,
    me: Option<Identity>,
    /// Messages that overtook READY (serenity runs each handler in its own task).
    early: Vec<Message>,
    /// Channel kinds and thread owners, by channel id; the oldest forgotten first.
    channels: BoundedMap<u64, ChannelInfo>,
    /// The claim of the message being mapped: what it maps to is told against it.
    claim: Option<Arrival>,
}

/// A connected inbox and mapper.
pub fn channel(
    cfg: DiscordConfig,
    rest: Rest,
    sink: Arc<dyn EventSink>,
) -> (Inbox, Mapper, mpsc::Receiver<Work>) {
    let (inbox, rx) = pump::inbox(QUEUE, RECENT);
    (
        Inbox(inbox),
        Mapper {
            cfg,
            rest,
            sink,
            me: None,
            early: Vec::new(),
            channels: BoundedMap::new(CHANNELS),
            claim: None,
        },
        rx,
    )
}

impl Mapper {
    /// Maps queued work until the inbox closes, or until shutdown: then nothing new is
    /// queued, and what was already queued is still submitted. Messages another replica
    /// claimed and died before mapping are handed here by the engine and mapped again, their
    /// claim already held.
    pub async fn run(mut self, rx: mpsc::Receiver<Work>, shutdown: Shutdown) {
        let taken_over = self.sink.arrivals("discord");
        pump::run(&mut self, rx, taken_over, shutdown).await;
    }

    async fn handle(&mut self, work: Work) {
        match work {
            Work::Ready(me) => {
                self.me = Some(me);
                for m in std::mem::take(&mut self.early) {
                    self.message(m).await;
                }
            }
            Work::Message(m) => self.message(*m).await,
            Work::Command(c, deferred) => self.command(*c, deferred).await,
            Work::Component(c) => self.component(*c).await,
        }
    }

    /// Maps a message another process claimed and did not finish mapping; a body this adapter
    /// cannot read ends its claim.
    async fn taken_over(&mut self, arrival: Arrival) {
        let message = crate::arrival::message_of(&arrival);
        tracing::info!(event = %arrival.event_id, "mapping a Discord message taken over");
        self.claim = Some(arrival);
        if let Some((me, m)) = message {
            self.map(m, me).await;
        }
        self.end_claim().await;
    }

    /// Ends the claim of a message that mapped to nothing: nothing is owed.
    async fn end_claim(&mut self) {
        anchorbot_platform::arrival::settle(self.sink.as_ref(), self.claim.take()).await;
    }

    /// Hands `event` to the engine: against the claim of the message being mapped, else
    /// journaled now (so another replica answers it if this one dies first). Interactions are
    /// never claimed: mapping them changes nothing on Discord before this. Discord
    /// acknowledges nothing, so a refusal only needs a log line (a duplicate: another
    /// replica's gateway delivered it too, sessions overlapping at a takeover, or a RESUME
    /// replayed it; answered once, elsewhere or already).
    async fn submit(&mut self, event: InboundEvent) {
        pump::submit(self.sink.as_ref(), self.claim.take(), event).await;
    }

    /// Remembers what `channel` is; a channel known already keeps its place in the order.
    fn remember(&mut self, channel: u64, info: ChannelInfo) {
        match self.channels.get_mut(&channel) {
            Some(known) => *known = info,
            None => {
                self.channels.insert(channel, info);
            }
        }
    }

    /// Whether `channel` is a thread, and the bot's: remembered, else `GET /channels/{id}`.
    /// Telling whose a thread is takes the bot's id, `bot` (a message taken over brings it
    /// before READY does); an answer read without it is not remembered.
    async fn channel_info(&mut self, channel: u64, bot: Option<u64>) -> Option<ChannelInfo> {
        if let Some(info) = self.channels.get(&channel) {
            return Some(*info);
        }
        let value = match self
            .rest
            .call(Method::GET, &format!("/channels/{channel}"), None)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(channel, error = %e, "could not read the channel");
                return None;
            }
        };
        let info = channel_info_of(&value, bot);
        if bot.is_some() {
            self.remember(channel, info);
        }
        Some(info)
    }

    /// A MESSAGE_CREATE from the gateway: kept until READY says who the bot is, then mapped.
    async fn message(&mut self, m: Message) {
        let Some(me) = self.me else {
            if self.early.len() < EARLY {
                self.early.push(m);
            }
            return;
        };
        self.map(m, me).await;
        self.end_claim().await;
    }

    /// Maps `m`: once it is known to be for the bot, it is claimed (unless its claim is held
    /// already: taken over), and only then does anything happen on Discord.
    async fn map(&mut self, m: Message, me: Identity) {
        if !considered(&m, me.bot) {
            return;
        }
        let info = match m.guild_id {
            Some(_) => self.channel_info(m.channel_id.get(), Some(me.bot)).await,
            None => None,
        };
        let Some(route) = route(&m, me.bot, info, self.cfg.reply_in_thread) else {
            return;
        };
        if self.claim.is_none() && !self.claimed(&route, &m, me).await {
            return;
        }
        let thread = if route.start_thread {
            self.create_thread(&m, me, route.channel).await
        } else {
            route.thread
        };
        self.incoming(
            &m,
            me,
            route.guild,
            route.channel,
            thread,
            route.mentions_bot,
        )
        .await;
    }

    /// Claims `m`; `false` when it is not this process's to answer (claimed before: a
    /// replayed delivery, or its twin reached another replica's session). A message that
    /// cannot be written down goes on unclaimed, journaled once mapped, as before claims.
    async fn claimed(&mut self, route: &Route, m: &Message, me: Identity) -> bool {
        let Some(arrival) = crate::arrival::of(route, m, me) else {
            return true;
        };
        if !pump::claim(self.sink.as_ref(), &arrival).await {
            return false;
        }
        self.claim = Some(arrival);
        true
    }

    /// A thread from the mention, named after the question; `None` (the reply goes in place)
    /// when Discord refuses. A message that has a thread already (this bot created it, then
    /// died before the mention was journaled) is answered in that thread, which has the
    /// message's id; its owner is asked when a message arrives in it.
    async fn create_thread(&mut self, m: &Message, me: Identity, channel: u64) -> Option<u64> {
        let names: Vec<&str> = m.attachments.iter().map(|a| a.filename.as_str()).collect();
        let body = json!({
            "name": thread_name(&strip_mention(&m.content, me.bot), &names),
            "auto_archive_duration": AUTO_ARCHIVE_MINUTES,
        });
        let path = format!("/channels/{channel}/messages/{}/threads", m.id.get());
        match self.rest.call_coded(Method::POST, &path, Some(&body)).await {
            Ok(v) => {
                let id = snowflake(&v["id"]).unwrap_or(m.id.get());
                self.remember(
                    id,
                    ChannelInfo {
                        parent: Some(channel),
                        bot_owned: true,
                    },
                );
                Some(id)
            }
            Err(Failure {
                code: Some(THREAD_ALREADY_CREATED),
                ..
            }) => {
                tracing::info!(
                    channel,
                    "the mention has its thread already; answering there"
                );
                Some(m.id.get())
            }
            Err(Failure { error, .. }) => {
                tracing::warn!(channel, error = %error, "could not create a thread; replying in place");
                None
            }
        }
    }

    /// Submits `m` as a message of the conversation in `channel` (`thread` when it is one).
    async fn incoming(
        &mut self,
        m: &Message,
        me: Identity,
        guild: Option<u64>,
        channel: u64,
        thread: Option<u64>,
        mentions_bot: bool,
    ) {
        let Some(key) = conversation_key(guild, channel, thread) else {
            return;
        };
        let id = m.id.get().to_string();
        let thread_s = thread.map(|t| t.to_string());
        let post_in = thread.unwrap_or(channel).to_string();
        let target = DiscordTarget {
            guild: guild.map(|g| g.to_string()),
            interaction: None,
        }
        .into_target(&post_in, thread_s.as_deref(), Some(&id));
        let mut text = strip_mention(&m.content, me.bot);
        if mentions_bot && COMMAND_WORDS.contains(&text.trim().to_ascii_lowercase().as_str()) {
            text = format!("/{}", text.trim().to_ascii_lowercase());
        }
        let attachments = m
            .attachments
            .iter()
            .map(|a| Attachment {
                name: a.filename.clone(),
                declared_mime: a.content_type.clone(),
                size: u64::from(a.size),
                locator: a.url.clone(),
            })
            .collect();
        self.submit(InboundEvent::Message(IncomingMessage {
            key,
            event_id: id,
            author: author(&m.author),
            text,
            attachments,
            reply_to: target,
            mentions_bot,
            from_bot: false,
        }))
        .await;
    }

    /// The conversation an interaction happened in: its channel, or the thread it is.
    async fn interaction_key(
        &mut self,
        guild: Option<u64>,
        channel: u64,
        partial: Option<&PartialChannel>,
    ) -> Option<(ConversationKey, Option<u64>)> {
        let Some(g) = guild else {
            return conversation_key(None, channel, None).map(|k| (k, None));
        };
        let parent = match partial {
            Some(p) if is_thread(p.kind) => p.parent_id.map(|id| id.get()),
            Some(_) => None,
            None => {
                let bot = self.me.map(|m| m.bot);
                self.channel_info(channel, bot).await.and_then(|i| i.parent)
            }
        };
        let (chan, thread) = match parent {
            Some(p) => (p, Some(channel)),
            None => (channel, None),
        };
        conversation_key(Some(g), chan, thread).map(|k| (k, thread))
    }

    /// `/status` and friends: the answer goes through the interaction's callback.
    async fn command(&mut self, c: CommandInteraction, deferred: bool) {
        let guild = c.guild_id.map(|g| g.get());
        let channel = c.channel_id.get();
        let Some((key, thread)) = self
            .interaction_key(guild, channel, c.channel.as_ref())
            .await
        else {
            return;
        };
        let args = c
            .data
            .options
            .iter()
            .filter_map(|o| match &o.value {
                CommandDataOptionValue::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(" ");
        let target = DiscordTarget {
            guild: guild.map(|g| g.to_string()),
            interaction: Some(InteractionRef {
                id: c.id.get().to_string(),
                token: c.token.clone(),
                application: c.application_id.get().to_string(),
                deferred,
                acknowledged: false,
            }),
        }
        .into_target(
            &channel.to_string(),
            thread.map(|t| t.to_string()).as_deref(),
            None,
        );
        self.submit(InboundEvent::Command(CommandInvocation {
            key,
            event_id: format!("i:{}", c.id.get()),
            author: author(&c.user),
            name: c.data.name.clone(),
            args,
            reply_to: target,
        }))
        .await;
    }

    /// A press of Stop, of a feedback button or of Regenerate (already acknowledged). Each
    /// keeps its interaction, so that a private note about it (the queue is full, an error)
    /// is an ephemeral follow-up, never a message in the channel.
    async fn component(&mut self, c: ComponentInteraction) {
        let guild = c.guild_id.map(|g| g.get());
        let channel = c.channel_id.get();
        let Some((key, thread)) = self
            .interaction_key(guild, channel, c.channel.as_ref())
            .await
        else {
            return;
        };
        let pressed = InteractionRef {
            id: c.id.get().to_string(),
            token: c.token.clone(),
            application: c.application_id.get().to_string(),
            deferred: false,
            acknowledged: true,
        };
        let target = DiscordTarget {
            guild: guild.map(|g| g.to_string()),
            interaction: Some(pressed.clone()),
        }
        .into_target(
            &channel.to_string(),
            thread.map(|t| t.to_string()).as_deref(),
            None,
        );
        let event_id = format!("i:{}", c.id.get());
        let who = author(&c.user);
        match c.data.custom_id.as_str() {
            STOP_ID => {
                self.submit(InboundEvent::Stop(StopRequest {
                    key,
                    event_id,
                    author: who,
                    reply_to: target,
                }))
                .await
            }
            id @ (GOOD_ID | BAD_ID) => {
                self.submit(InboundEvent::Feedback(Feedback {
                    key,
                    event_id,
                    author: who,
                    message: MessageRef {
                        channel: c.message.channel_id.get().to_string(),
                        id: c.message.id.get().to_string(),
                    },
                    positive: id == GOOD_ID,
                    reply_to: target,
                }))
                .await
            }
            REGENERATE_ID => {
                // The new answer replies to the question the old one replied to.
                let question = c
                    .message
                    .message_reference
                    .as_ref()
                    .and_then(|r| r.message_id)
                    .map(|id| id.get().to_string());
                let target = DiscordTarget {
                    guild: guild.map(|g| g.to_string()),
                    interaction: Some(pressed),
                }
                .into_target(
                    &channel.to_string(),
                    thread.map(|t| t.to_string()).as_deref(),
                    question.as_deref(),
                );
                self.submit(InboundEvent::Regenerate(RegenerateRequest {
                    key,
                    event_id,
                    author: who,
                    message: MessageRef {
                        channel: c.message.channel_id.get().to_string(),
                        id: c.message.id.get().to_string(),
                    },
                    reply_to: target,
                }))
                .await
            }
            other => tracing::debug!(custom_id = other, "unknown button ignored"),
        }
    }
}

#[async_trait]
impl pump::Mapper for Mapper {
    type Work = Work;

    async fn map(&mut self, work: Work) {
        self.handle(work).await;
    }

    async fn take_over(&mut self, arrival: Arrival) {
        self.taken_over(arrival).await;
    }
}

/// The person, with the name Discord shows.
fn author(u: &User) -> Author {
    Author {
        id: u.id.get().to_string(),
        display_name: u.global_name.clone().unwrap_or_else(|| u.name.clone()),
    }
}

/// Whether a channel kind is a thread (public, private, announcement; forum posts are public
/// threads).
pub fn is_thread(kind: ChannelType) -> bool {
    matches!(
        kind,
        ChannelType::PublicThread | ChannelType::PrivateThread | ChannelType::NewsThread
    )
}

/// A snowflake from JSON, written as a string (Discord) or a number.
pub fn snowflake(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// What a channel object says: a thread (types 10, 11, 12) has a parent and an owner.
pub fn channel_info_of(v: &Value, bot: Option<u64>) -> ChannelInfo {
    let thread = matches!(v["type"].as_u64(), Some(10..=12));
    let parent = if thread {
        snowflake(&v["parent_id"])
    } else {
        None
    };
    let owner = snowflake(&v["owner_id"]);
    ChannelInfo {
        parent,
        bot_owned: parent.is_some() && owner.is_some() && owner == bot,
    }
}

/// `text` without the bot's `<@ID>` and `<@!ID>` mentions.
pub fn strip_mention(text: &str, bot: u64) -> String {
    text.replace(&format!("<@{bot}>"), "")
        .replace(&format!("<@!{bot}>"), "")
        .trim()
        .to_string()
}

/// A thread's name: the question's first line, at most 80 characters, else the first file's
/// name, else "anchorbot".
pub fn thread_name(question: &str, files: &[&str]) -> String {
    let line = question.lines().map(str::trim).find(|l| !l.is_empty());
    let base = line.or(files.first().copied()).unwrap_or("anchorbot");
    let mut name: String = base.chars().take(THREAD_NAME_CHARS).collect();
    if base.chars().count() > THREAD_NAME_CHARS {
        name.push('…');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_stripped() {
        assert_eq!(strip_mention("<@42> what is up?", 42), "what is up?");
        assert_eq!(strip_mention("hey <@!42>", 42), "hey");
        assert_eq!(strip_mention("<@43> hi <@42>", 42), "<@43> hi");
    }

    #[test]
    fn keys_follow_the_documented_forms() {
        assert_eq!(
            conversation_key(Some(1), 2, Some(3)).unwrap().to_string(),
            "discord:1/2/3"
        );
        assert_eq!(
            conversation_key(Some(1), 2, None).unwrap().to_string(),
            "discord:1/2"
        );
        assert_eq!(
            conversation_key(None, 9, None).unwrap().to_string(),
            "discord:9"
        );
        assert_eq!(
            conversation_key(None, 9, Some(3)).unwrap().to_string(),
            "discord:9"
        );
    }

    #[test]
    fn channel_objects_tell_threads_and_owners() {
        let owned = json!({"id": "5", "type": 11, "parent_id": "2", "owner_id": "42"});
        assert_eq!(
            channel_info_of(&owned, Some(42)),
            ChannelInfo {
                parent: Some(2),
                bot_owned: true
            }
        );
        let other = json!({"id": "5", "type": 11, "parent_id": "2", "owner_id": "7"});
        assert!(!channel_info_of(&other, Some(42)).bot_owned);
        let text = json!({"id": "2", "type": 0, "parent_id": "100"});
        assert_eq!(
            channel_info_of(&text, Some(42)),
            ChannelInfo {
                parent: None,
                bot_owned: false
            }
        );
        assert!(is_thread(ChannelType::PublicThread));
        assert!(!is_thread(ChannelType::Text));
    }

    #[test]
    fn thread_names_are_short_and_never_empty() {
        assert_eq!(thread_name("What is X?\nmore", &[]), "What is X?");
        let long = "a".repeat(200);
        assert_eq!(thread_name(&long, &[]).chars().count(), 81);
        assert_eq!(thread_name("  ", &["report.pdf"]), "report.pdf");
        assert_eq!(thread_name("", &[]), "anchorbot");
    }
}
