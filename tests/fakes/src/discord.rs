//! A local fake Discord for the Discord adapter's end-to-end tests, written from Discord's
//! documented payloads (API v10) and checked against what serenity 0.12.5 sends and parses.
//!
//! It is as strict as Discord: every REST request is checked against Discord's published
//! OpenAPI spec ([`crate::discord_spec`]) and the limits its docs give in prose (2,000
//! characters of content, 5 action rows of at most 5 buttons, `custom_id` of 1 to 100
//! characters, an interaction's initial response within 3 s, commands only for the
//! installation contexts the application has enabled), and rate limited per bucket as Discord
//! does ([`crate::discord_limits`]). A request that breaks a rule is answered as Discord would
//! answer it and recorded in [`Violations`]; the test's last handle of the fake fails the test
//! when it is dropped with rules broken.
//!
//! One listener on 127.0.0.1 serves:
//! - REST at `/api/v10/...` (`Authorization: Bot <token>`, Discord's error bodies and codes,
//!   `X-RateLimit-*` headers, per-bucket and global 429s, stalls on demand);
//! - the gateway over WebSocket at `/` (what `GET /api/v10/gateway` hands out; serenity appends
//!   `?v=10`): HELLO, IDENTIFY → READY + GUILD_CREATE, heartbeats, RESUME with replay,
//!   INVALID_SESSION, RECONNECT, close codes, and intent filtering (MESSAGE_CONTENT empties
//!   guild message content that does not mention the bot, as Discord does);
//! - a CDN at `/attachments/...` for message attachments.
//!
//! Point serenity at it with `HttpBuilder::new(token).proxy(fake.base_url())
//! .ratelimiter_disabled(true)`; with the rate limiter on, serenity ignores the proxy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::discord_limits::{Admission, Limits};
use crate::discord_spec;
use crate::rules::Violations;

/// Discord's limit on a message's `content`.
pub const MAX_CONTENT_CHARS: usize = 2000;
/// Time an interaction token accepts its initial callback.
pub const INTERACTION_DEADLINE: Duration = Duration::from_secs(3);
/// Action rows a message may have.
pub const MAX_ACTION_ROWS: usize = 5;
/// Buttons an action row may hold.
pub const MAX_ROW_BUTTONS: usize = 5;
/// Characters of a component's `custom_id`.
pub const MAX_CUSTOM_ID_CHARS: usize = 100;
/// Discord's epoch (2015-01-01) in Unix milliseconds, the base of snowflakes.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Gateway intent bits (Discord's `GatewayIntents`).
pub mod intents {
    /// `GUILDS`: guild, channel and thread events.
    pub const GUILDS: u64 = 1 << 0;
    /// `GUILD_MESSAGES`: MESSAGE_CREATE / UPDATE / DELETE in guilds.
    pub const GUILD_MESSAGES: u64 = 1 << 9;
    /// `DIRECT_MESSAGES`: the same in DMs.
    pub const DIRECT_MESSAGES: u64 = 1 << 12;
    /// `MESSAGE_CONTENT` (privileged): content, embeds, attachments and components.
    pub const MESSAGE_CONTENT: u64 = 1 << 15;
}

/// Application flag: the MESSAGE_CONTENT intent, approved for a verified bot in 100 or more
/// servers.
pub const FLAG_GATEWAY_MESSAGE_CONTENT: u64 = 1 << 18;
/// Application flag: the MESSAGE_CONTENT intent switched on in the portal's Bot settings, for a
/// bot in fewer than 100 servers (what a new bot has).
pub const FLAG_GATEWAY_MESSAGE_CONTENT_LIMITED: u64 = 1 << 19;
/// Message flag: only the invoking user sees it.
pub const FLAG_EPHEMERAL: u64 = 1 << 6;

/// Channel types used here (Discord's `ChannelType`).
pub mod channel_type {
    /// A guild text channel.
    pub const GUILD_TEXT: u64 = 0;
    /// A direct message.
    pub const DM: u64 = 1;
    /// An announcement channel.
    pub const GUILD_ANNOUNCEMENT: u64 = 5;
    /// A public thread.
    pub const PUBLIC_THREAD: u64 = 11;
    /// A private thread.
    pub const PRIVATE_THREAD: u64 = 12;
    /// A forum channel (its posts are public threads).
    pub const GUILD_FORUM: u64 = 15;
}

/// A channel the fake knows from the start.
#[derive(Debug, Clone)]
pub struct FakeChannel {
    /// Snowflake.
    pub id: String,
    /// Channel type (see [`channel_type`]).
    pub kind: u64,
    /// Name.
    pub name: String,
    /// Parent channel (a thread's channel, or a category).
    pub parent_id: Option<String>,
    /// A thread's creator.
    pub owner_id: Option<String>,
}

/// A guild the bot is in, sent as GUILD_CREATE after READY.
#[derive(Debug, Clone)]
pub struct FakeGuild {
    /// Snowflake.
    pub id: String,
    /// Name.
    pub name: String,
    /// Owner's user id.
    pub owner_id: String,
    /// Channels and threads (threads are sent in `threads`).
    pub channels: Vec<FakeChannel>,
}

/// Who the fake application is and how it behaves.
#[derive(Debug, Clone)]
pub struct FakeDiscordConfig {
    /// The bot token; REST wants `Authorization: Bot <token>`, IDENTIFY and RESUME accept it
    /// with or without the `Bot ` prefix.
    pub token: String,
    /// Application id.
    pub application_id: String,
    /// The bot user's id (what `<@…>` mentions name).
    pub bot_user_id: String,
    /// The bot user's name.
    pub bot_username: String,
    /// Whether the MESSAGE_CONTENT intent is enabled in the portal (application flag); when
    /// off, an IDENTIFY asking for it is closed with 4014.
    pub message_content_enabled: bool,
    /// HELLO's `heartbeat_interval`.
    pub heartbeat_interval: Duration,
    /// Guilds the bot is in.
    pub guilds: Vec<FakeGuild>,
    /// Interactions' `attachment_size_limit` (bytes).
    pub attachment_size_limit: u64,
    /// Dispatch what the bot's own REST calls cause (MESSAGE_CREATE / UPDATE / DELETE echoes,
    /// THREAD_CREATE), as Discord does.
    pub echo_bot_events: bool,
    /// The installation contexts enabled in the portal (Installation → Installation
    /// Contexts): 0 Guild Install, 1 User Install. `GET /applications/@me` lists them in
    /// `integration_types_config`; a global command for any other is refused.
    pub integration_types: Vec<u64>,
    /// Calls a rate-limit bucket takes per window, per channel (or other major parameter).
    pub bucket_limit: u32,
    /// The bucket window.
    pub bucket_window: Duration,
}

impl Default for FakeDiscordConfig {
    fn default() -> Self {
        Self {
            token: "MTIwMDAwMDAwMDAwMDAwMDAwMQ.GfAkE1.fake-discord-bot-token-000000000000".into(),
            application_id: "1200000000000000001".into(),
            bot_user_id: "1200000000000000001".into(),
            bot_username: "anchorbot".into(),
            message_content_enabled: true,
            heartbeat_interval: Duration::from_millis(1000),
            guilds: vec![FakeGuild {
                id: GUILD_ID.into(),
                name: "Anchor Test".into(),
                owner_id: USER_ID.into(),
                channels: vec![
                    FakeChannel {
                        id: TEXT_CHANNEL_ID.into(),
                        kind: channel_type::GUILD_TEXT,
                        name: "general".into(),
                        parent_id: None,
                        owner_id: None,
                    },
                    FakeChannel {
                        id: FORUM_CHANNEL_ID.into(),
                        kind: channel_type::GUILD_FORUM,
                        name: "questions".into(),
                        parent_id: None,
                        owner_id: None,
                    },
                ],
            }],
            attachment_size_limit: 10 * 1024 * 1024,
            echo_bot_events: true,
            // What a new application has: both installation contexts.
            integration_types: vec![INSTALL_GUILD, INSTALL_USER],
            // Message routes allow about 5 calls per 5 s per channel.
            bucket_limit: 5,
            bucket_window: Duration::from_secs(5),
        }
    }
}

/// Installation context (`ApplicationIntegrationType`): installed to a server.
pub const INSTALL_GUILD: u64 = 0;
/// Installation context: installed to a user.
pub const INSTALL_USER: u64 = 1;

/// The default guild's id.
pub const GUILD_ID: &str = "1200000000000000100";
/// The default guild's text channel (`#general`).
pub const TEXT_CHANNEL_ID: &str = "1200000000000000101";
/// The default guild's forum channel (`#questions`).
pub const FORUM_CHANNEL_ID: &str = "1200000000000000102";
/// A human user (the default guild's owner).
pub const USER_ID: &str = "1200000000000000200";
/// A second human user.
pub const OTHER_USER_ID: &str = "1200000000000000201";
/// Another bot.
pub const OTHER_BOT_ID: &str = "1200000000000000300";

/// One REST request as the fake received it.
#[derive(Debug, Clone)]
pub struct RestCall {
    /// HTTP method.
    pub method: String,
    /// Path below `/api/v10`, without the query.
    pub path: String,
    /// The route template, e.g. `POST /channels/{channel_id}/messages` (what
    /// [`FakeDiscord::rate_limit`] takes).
    pub route: String,
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// The JSON body (`Null` when empty or not JSON).
    pub body: Value,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The `X-Audit-Log-Reason` header.
    pub audit_log_reason: Option<String>,
    /// When it arrived.
    pub at: Instant,
    /// HTTP status of the answer.
    pub status: u16,
    /// The JSON answer (`Null` for 204).
    pub response: Value,
}

/// A message as Discord stores it, so tests can assert what a user finally sees.
#[derive(Debug, Clone)]
pub struct FakeMessage {
    /// Snowflake.
    pub id: String,
    /// Channel (or thread) it is in.
    pub channel_id: String,
    /// Guild, if any.
    pub guild_id: Option<String>,
    /// The author's user object.
    pub author: Value,
    /// Message type (0 default, 19 reply, 21 thread starter, 20 chat input command).
    pub kind: u64,
    /// Current content.
    pub content: String,
    /// Current components (action rows).
    pub components: Vec<Value>,
    /// Current embeds.
    pub embeds: Vec<Value>,
    /// Attachment objects.
    pub attachments: Vec<Value>,
    /// User objects mentioned.
    pub mentions: Vec<Value>,
    /// `message_reference` as sent.
    pub message_reference: Option<Value>,
    /// Message flags (64 = ephemeral).
    pub flags: u64,
    /// The interaction token it answers, for interaction responses.
    pub interaction_token: Option<String>,
    /// When it was created.
    pub created: Instant,
    /// When each edit landed, oldest first.
    pub edit_times: Vec<Instant>,
    /// Content after creation and each edit, oldest first.
    pub history: Vec<String>,
    /// Deleted with `DELETE`.
    pub deleted: bool,
    /// Thread started from this message.
    pub thread_id: Option<String>,
}

impl FakeMessage {
    /// How many times it was edited.
    pub fn edits(&self) -> usize {
        self.edit_times.len()
    }

    /// The author's id.
    pub fn author_id(&self) -> String {
        self.author["id"].as_str().unwrap_or("").to_string()
    }

    /// True when only the invoking user sees it.
    pub fn ephemeral(&self) -> bool {
        self.flags & FLAG_EPHEMERAL != 0
    }

    /// Every button (`type` 2) in its action rows.
    pub fn buttons(&self) -> Vec<Value> {
        self.components
            .iter()
            .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
            .filter(|c| c["type"] == 2)
            .collect()
    }

    /// `custom_id`s of its buttons.
    pub fn custom_ids(&self) -> Vec<String> {
        self.buttons()
            .iter()
            .filter_map(|b| b["custom_id"].as_str().map(str::to_string))
            .collect()
    }

    /// The message object as Discord's REST API returns it.
    pub fn to_json(&self) -> Value {
        let id: u64 = self.id.parse().unwrap_or(0);
        let mut m = json!({
            "id": self.id,
            "channel_id": self.channel_id,
            "author": self.author,
            "content": self.content,
            "timestamp": iso8601(snowflake_ms(id)),
            "edited_timestamp": null,
            "tts": false,
            "mention_everyone": false,
            "mentions": self.mentions,
            "mention_roles": [],
            "attachments": self.attachments,
            "embeds": self.embeds,
            "pinned": false,
            "type": self.kind,
            "flags": self.flags,
            "components": self.components,
        });
        if let Some(t) = self.edit_times.last() {
            let ago = t.elapsed().as_millis() as u64;
            m["edited_timestamp"] = json!(iso8601(now_ms().saturating_sub(ago)));
        }
        if let Some(r) = &self.message_reference {
            m["message_reference"] = r.clone();
        }
        if let Some(g) = &self.guild_id {
            m["guild_id"] = json!(g);
        }
        if self.author["bot"] == true && self.interaction_token.is_none() {
            m["application_id"] = self.author["id"].clone();
        }
        m
    }
}

/// A `POST /channels/{id}/messages/{mid}/threads` the fake accepted.
#[derive(Debug, Clone)]
pub struct ThreadStart {
    /// The channel the message is in.
    pub parent_id: String,
    /// The starter message (also the thread's id, as Discord does).
    pub message_id: String,
    /// The new thread's id.
    pub thread_id: String,
    /// `name`.
    pub name: String,
    /// `auto_archive_duration`, if given.
    pub auto_archive_duration: Option<u64>,
    /// When it happened.
    pub at: Instant,
}

/// A bulk overwrite of application commands.
#[derive(Debug, Clone)]
pub struct CommandsPut {
    /// The guild for guild commands, `None` for global ones.
    pub guild_id: Option<String>,
    /// The commands as sent.
    pub commands: Vec<Value>,
    /// When it happened.
    pub at: Instant,
}

/// An interaction the fake dispatched, and what became of it.
#[derive(Debug, Clone)]
pub struct FakeInteraction {
    /// Interaction id.
    pub id: String,
    /// Interaction token.
    pub token: String,
    /// Interaction type (2 command, 3 component).
    pub kind: u64,
    /// Channel it came from.
    pub channel_id: String,
    /// When it was dispatched (the 3-second deadline runs from here).
    pub dispatched: Option<Instant>,
    /// Callbacks accepted: (type, data, when).
    pub callbacks: Vec<(u64, Value, Instant)>,
    /// When each callback arrived, refused ones (too late, a second one) included.
    pub attempts: Vec<Instant>,
    /// The message the original response created, once there is one.
    pub original: Option<String>,
    /// The message a component interaction was on.
    pub message_id: Option<String>,
}

impl FakeInteraction {
    /// Time from dispatch to the first callback.
    pub fn ack_latency(&self) -> Option<Duration> {
        let first = self.callbacks.first()?.2;
        Some(first.saturating_duration_since(self.dispatched?))
    }
}

/// A typing indicator trigger.
#[derive(Debug, Clone)]
pub struct Typing {
    /// Channel.
    pub channel_id: String,
    /// When.
    pub at: Instant,
}

/// An HTTP request to the CDN.
#[derive(Debug, Clone)]
pub struct CdnRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Every header, lower-case names.
    pub headers: Vec<(String, String)>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// Status answered.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

/// A gateway frame the client sent (IDENTIFY, RESUME, heartbeat, …).
#[derive(Debug, Clone)]
pub struct GatewayFrame {
    /// Which connection (1 = the first ever opened).
    pub connection: usize,
    /// Opcode.
    pub op: u64,
    /// `d`.
    pub d: Value,
    /// When it arrived.
    pub at: Instant,
}

enum Out {
    Text(String),
    Close(u16, String),
}

struct Conn {
    id: usize,
    tx: mpsc::UnboundedSender<Out>,
    /// Intents of the session this connection identified or resumed into.
    intents: Option<u64>,
}

struct Session {
    id: String,
    intents: u64,
    seq: u64,
    /// Every dispatch of the session: (seq, t, d), for RESUME replay.
    log: Vec<(u64, String, Value)>,
}

#[derive(Default)]
struct St {
    calls: Vec<RestCall>,
    /// Routes whose next calls are answered late: route → (calls left, delay).
    stalls: HashMap<String, (usize, Duration)>,
    /// Routes whose next calls are carried out at once and answered late: route → (calls
    /// left, delay).
    late: HashMap<String, (usize, Duration)>,
    /// The commands registered now: global (`None`) or per guild, by name.
    registered: HashMap<Option<String>, Vec<Value>>,
    /// Commands created one at a time (`POST .../commands`), in order.
    created: Vec<CommandsPut>,
    channels: HashMap<String, Value>,
    users: HashMap<String, Value>,
    messages: Vec<FakeMessage>,
    typing: Vec<Typing>,
    threads: Vec<ThreadStart>,
    commands: Vec<CommandsPut>,
    interactions: Vec<FakeInteraction>,
    attachments: HashMap<String, (Vec<u8>, String)>,
    cdn_requests: Vec<CdnRequest>,
    conns: Vec<Conn>,
    opened: usize,
    connect_queries: Vec<String>,
    frames: Vec<GatewayFrame>,
    session: Option<Session>,
    sessions_started: usize,
    /// The most connections that received dispatches at the same time.
    most_ready: usize,
    /// Dispatches made before any session existed; delivered after the first READY.
    pending: Vec<(String, Value)>,
    last_snowflake: u64,
}

struct Shared {
    cfg: FakeDiscordConfig,
    base: String,
    st: Mutex<St>,
    /// Every published rule a request broke.
    rules: Violations,
    /// Buckets, holds and forced 429s.
    limits: Mutex<Limits>,
}

/// Fails the test, naming the rules, when the test's last handle of the fake goes.
struct RulesCheck(Violations);

impl Drop for RulesCheck {
    fn drop(&mut self) {
        self.0.assert_none("Discord");
    }
}

/// The fake Discord. Dropping it does not stop the server (it lives as long as the runtime).
/// Dropping the test's last handle fails the test if a request broke one of Discord's
/// published rules, naming each.
#[derive(Clone)]
pub struct FakeDiscord {
    shared: Arc<Shared>,
    _check: Arc<RulesCheck>,
}

impl FakeDiscord {
    /// Starts the fake on 127.0.0.1 with an ephemeral port.
    pub async fn start(cfg: FakeDiscordConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let mut st = St::default();
        for g in &cfg.guilds {
            for c in &g.channels {
                st.channels
                    .insert(c.id.clone(), channel_json(c, Some(&g.id)));
            }
        }
        let bot = user_json(&cfg.bot_user_id, &cfg.bot_username, true);
        st.users.insert(cfg.bot_user_id.clone(), bot);
        for (id, name, is_bot) in [
            (USER_ID, "alice", false),
            (OTHER_USER_ID, "bob", false),
            (OTHER_BOT_ID, "otherbot", true),
        ] {
            st.users.insert(id.into(), user_json(id, name, is_bot));
        }
        let rules = Violations::default();
        let limits = Limits::new(cfg.bucket_limit, cfg.bucket_window);
        let shared = Arc::new(Shared {
            cfg,
            base: format!("http://{addr}"),
            st: Mutex::new(st),
            rules: rules.clone(),
            limits: Mutex::new(limits),
        });
        let app = Router::new()
            .route("/", get(gateway))
            .route("/api/v10/{*rest}", any(api))
            .route("/attachments/{*rest}", any(cdn))
            .with_state(shared.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            shared,
            _check: Arc::new(RulesCheck(rules)),
        }
    }

    /// The published rules requests broke so far; a test that breaks one on purpose `take()`s
    /// it.
    pub fn violations(&self) -> &Violations {
        &self.shared.rules
    }

    /// Starts the fake with the default application and guild.
    pub async fn start_default() -> Self {
        Self::start(FakeDiscordConfig::default()).await
    }

    fn st(&self) -> MutexGuard<'_, St> {
        self.shared.st.lock().unwrap()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &FakeDiscordConfig {
        &self.shared.cfg
    }

    /// `http://127.0.0.1:PORT`: serenity's `HttpBuilder::proxy`, the adapter's `api_url`.
    pub fn base_url(&self) -> String {
        self.shared.base.clone()
    }

    /// `ws://127.0.0.1:PORT`: what `GET /gateway` answers.
    pub fn gateway_url(&self) -> String {
        self.shared.base.replacen("http://", "ws://", 1)
    }

    /// A fresh, increasing snowflake.
    pub fn next_id(&self) -> String {
        next_snowflake(&mut self.st()).to_string()
    }

    // ---- REST ----

    /// Makes the next `n` calls of `route` (e.g. `"PATCH
    /// /channels/{channel_id}/messages/{message_id}"`, see [`RestCall::route`]) answer 429
    /// with `retry_after` seconds; each holds the route's bucket (in its channel) that long.
    pub fn rate_limit(&self, route: &str, n: usize, retry_after: f64) {
        self.limits().force(route, n, retry_after);
    }

    /// Answers the next call that the global limit binds (any but the interaction endpoints)
    /// with a global 429 of `retry_after` seconds, which holds every such route that long.
    pub fn global_rate_limit(&self, retry_after: f64) {
        self.limits().force_global(retry_after);
    }

    /// Puts `routes` in one rate-limit bucket, the first one's (Discord groups routes so).
    pub fn share_bucket(&self, routes: &[&str]) {
        self.limits().share(routes);
    }

    /// The `X-RateLimit-Bucket` the fake sends for `route`.
    pub fn bucket_of(&self, route: &str) -> String {
        self.limits().bucket(route)
    }

    /// Answers the next `n` calls of `route` only after `delay` (a slow Discord).
    pub fn stall(&self, route: &str, n: usize, delay: Duration) {
        self.st().stalls.insert(route.to_string(), (n, delay));
    }

    /// Carries out the next `n` calls of `route` at once but answers them only after `delay`
    /// (Discord did it; its answer is slow to come back, or its caller dies waiting).
    pub fn answer_late(&self, route: &str, n: usize, delay: Duration) {
        self.st().late.insert(route.to_string(), (n, delay));
    }

    fn limits(&self) -> MutexGuard<'_, Limits> {
        self.shared
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every REST call so far, in arrival order.
    pub fn calls(&self) -> Vec<RestCall> {
        self.st().calls.clone()
    }

    /// The calls of one route template, in arrival order.
    pub fn calls_to(&self, route: &str) -> Vec<RestCall> {
        self.st()
            .calls
            .iter()
            .filter(|c| c.route == route)
            .cloned()
            .collect()
    }

    /// Waits until at least `n` calls of `route` have been answered.
    pub async fn wait_calls(&self, route: &str, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.calls_to(route).len() >= n).await
    }

    // ---- Channels and messages ----

    /// Adds (or replaces) a channel object, e.g. a thread someone else created.
    pub fn add_channel(&self, channel: Value) {
        let id = channel["id"].as_str().unwrap().to_string();
        self.st().channels.insert(id, channel);
    }

    /// The channel object of `id`, if known.
    pub fn channel(&self, id: &str) -> Option<Value> {
        self.st().channels.get(id).cloned()
    }

    /// Every message ever stored, deleted ones included, in creation order.
    pub fn messages(&self) -> Vec<FakeMessage> {
        self.st().messages.clone()
    }

    /// One message by id.
    pub fn find_message(&self, id: &str) -> Option<FakeMessage> {
        self.st().messages.iter().find(|m| m.id == id).cloned()
    }

    /// The visible (not deleted, not ephemeral) messages of a channel or thread, oldest first.
    pub fn channel_messages(&self, channel_id: &str) -> Vec<FakeMessage> {
        self.st()
            .messages
            .iter()
            .filter(|m| m.channel_id == channel_id && !m.deleted && !m.ephemeral())
            .cloned()
            .collect()
    }

    /// The bot's visible messages in a channel or thread, oldest first.
    pub fn bot_messages(&self, channel_id: &str) -> Vec<FakeMessage> {
        let bot = self.shared.cfg.bot_user_id.clone();
        self.channel_messages(channel_id)
            .into_iter()
            .filter(|m| m.author_id() == bot && m.interaction_token.is_none())
            .collect()
    }

    /// Waits until `pred` holds for the visible messages of a channel or thread.
    pub async fn wait_messages(
        &self,
        channel_id: &str,
        timeout: Duration,
        pred: impl Fn(&[FakeMessage]) -> bool,
    ) -> bool {
        wait_until(timeout, || pred(&self.channel_messages(channel_id))).await
    }

    /// Threads started from messages, in order.
    pub fn threads_created(&self) -> Vec<ThreadStart> {
        self.st().threads.clone()
    }

    /// Waits for a thread started from `message_id` and returns its id.
    pub async fn wait_thread_from(&self, message_id: &str, timeout: Duration) -> Option<String> {
        let mut found = None;
        wait_until(timeout, || {
            found = self
                .st()
                .threads
                .iter()
                .find(|t| t.message_id == message_id)
                .map(|t| t.thread_id.clone());
            found.is_some()
        })
        .await;
        found
    }

    /// Typing triggers in a channel, oldest first.
    pub fn typing(&self, channel_id: &str) -> Vec<Typing> {
        self.st()
            .typing
            .iter()
            .filter(|t| t.channel_id == channel_id)
            .cloned()
            .collect()
    }

    /// Command bulk overwrites Discord accepted, in order.
    pub fn commands_puts(&self) -> Vec<CommandsPut> {
        self.st().commands.clone()
    }

    /// Commands Discord accepted one at a time (`POST .../commands`), in order.
    pub fn commands_created(&self) -> Vec<CommandsPut> {
        self.st().created.clone()
    }

    /// The commands registered now, global (`None`) or in a guild, as Discord returns them.
    pub fn registered_commands(&self, guild: Option<&str>) -> Vec<Value> {
        self.st()
            .registered
            .get(&guild.map(str::to_string))
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until the registered commands (global or in `guild`) are at least `n`.
    pub async fn wait_commands(&self, guild: Option<&str>, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.registered_commands(guild).len() >= n).await
    }

    /// Every interaction dispatched, with its callbacks.
    pub fn interactions(&self) -> Vec<FakeInteraction> {
        self.st().interactions.clone()
    }

    /// One interaction by id.
    pub fn interaction(&self, id: &str) -> Option<FakeInteraction> {
        self.st().interactions.iter().find(|i| i.id == id).cloned()
    }

    /// Waits until the interaction got a callback and returns it.
    pub async fn wait_callback(&self, id: &str, timeout: Duration) -> Option<FakeInteraction> {
        let ok = wait_until(timeout, || {
            self.interaction(id)
                .is_some_and(|i| !i.callbacks.is_empty())
        })
        .await;
        ok.then(|| self.interaction(id)).flatten()
    }

    /// The message an interaction's original response shows now.
    pub fn original_response(&self, interaction_id: &str) -> Option<FakeMessage> {
        let mid = self.interaction(interaction_id)?.original?;
        self.find_message(&mid)
    }

    /// Stores a thread someone else made in `parent_id`, with its messages `(user id, text)`
    /// oldest first, and returns the thread's id. The thread's channel object is known to
    /// `GET /channels/{id}` and its messages to the history route.
    pub fn seed_thread(
        &self,
        parent_id: &str,
        owner_id: &str,
        name: &str,
        messages: &[(&str, &str)],
    ) -> String {
        let guild_id = self.guild_of(parent_id);
        let thread_id = self.next_id();
        let thread = thread_json(
            &thread_id,
            guild_id.as_deref(),
            parent_id,
            owner_id,
            name,
            channel_type::PUBLIC_THREAD,
        );
        let mut st = self.st();
        st.channels.insert(thread_id.clone(), thread);
        for (user, text) in messages {
            let id = next_snowflake(&mut st).to_string();
            let author = user_of(&st, user);
            let m = new_message(&id, &thread_id, guild_id.clone(), author, text);
            st.messages.push(m);
        }
        thread_id
    }

    /// Stores a thread `owner_id` started from a message, as Discord makes one: the message
    /// `starter` `(user id, text)` in `parent_id`; the thread, whose id is that message's; its
    /// THREAD_STARTER_MESSAGE (type 21, empty, referencing the message in `parent_id`); then
    /// `messages` `(user id, text)` oldest first. Returns the thread's id. The history route
    /// lists the starter with the referenced message as `referenced_message`.
    pub fn seed_thread_from_message(
        &self,
        parent_id: &str,
        owner_id: &str,
        name: &str,
        starter: (&str, &str),
        messages: &[(&str, &str)],
    ) -> String {
        let guild_id = self.guild_of(parent_id);
        let mut st = self.st();
        let thread_id = next_snowflake(&mut st).to_string();
        let author = user_of(&st, starter.0);
        let mut parent = new_message(&thread_id, parent_id, guild_id.clone(), author, starter.1);
        parent.thread_id = Some(thread_id.clone());
        st.messages.push(parent);
        let thread = thread_json(
            &thread_id,
            guild_id.as_deref(),
            parent_id,
            owner_id,
            name,
            channel_type::PUBLIC_THREAD,
        );
        st.channels.insert(thread_id.clone(), thread);
        let starter_id = next_snowflake(&mut st).to_string();
        let author = user_of(&st, starter.0);
        let mut first = new_message(&starter_id, &thread_id, guild_id.clone(), author, "");
        first.kind = 21;
        first.message_reference = Some(json!({
            "type": 0, "channel_id": parent_id, "message_id": thread_id, "guild_id": guild_id
        }));
        st.messages.push(first);
        for (user, text) in messages {
            let id = next_snowflake(&mut st).to_string();
            let author = user_of(&st, user);
            let m = new_message(&id, &thread_id, guild_id.clone(), author, text);
            st.messages.push(m);
        }
        thread_id
    }

    fn guild_of(&self, channel_id: &str) -> Option<String> {
        self.st()
            .channels
            .get(channel_id)
            .and_then(|c| c["guild_id"].as_str().map(str::to_string))
    }

    // ---- CDN ----

    /// Hosts an attachment on the fake CDN and returns its URL and size.
    pub fn host_attachment(&self, name: &str, bytes: &[u8], content_type: &str) -> (String, u64) {
        let mut st = self.st();
        let a = next_snowflake(&mut st);
        let b = next_snowflake(&mut st);
        let path = format!("/attachments/{a}/{b}/{}", url_encode(name));
        st.attachments
            .insert(path.clone(), (bytes.to_vec(), content_type.to_string()));
        let url = format!(
            "{}{path}?ex={:x}&is={:x}&hm={:064x}&",
            self.shared.base,
            now_ms() / 1000 + 86_400,
            now_ms() / 1000,
            (a as u128) * 0x9e37_79b9_7f4a_7c15
        );
        (url, bytes.len() as u64)
    }

    /// Every CDN request, with its headers.
    pub fn cdn_requests(&self) -> Vec<CdnRequest> {
        self.st().cdn_requests.clone()
    }

    // ---- Gateway ----

    /// WebSocket connections opened so far.
    pub fn connections_opened(&self) -> usize {
        self.st().opened
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.st().conns.len()
    }

    /// The query string of every gateway connection (`v=10`, …), in order.
    pub fn connect_queries(&self) -> Vec<String> {
        self.st().connect_queries.clone()
    }

    /// Every frame the clients sent, in order.
    pub fn frames(&self) -> Vec<GatewayFrame> {
        self.st().frames.clone()
    }

    /// Frames of one opcode (1 heartbeat, 2 identify, 6 resume, …).
    pub fn frames_of(&self, op: u64) -> Vec<GatewayFrame> {
        self.st()
            .frames
            .iter()
            .filter(|f| f.op == op)
            .cloned()
            .collect()
    }

    /// IDENTIFY frames.
    pub fn identifies(&self) -> Vec<GatewayFrame> {
        self.frames_of(2)
    }

    /// RESUME frames.
    pub fn resumes(&self) -> Vec<GatewayFrame> {
        self.frames_of(6)
    }

    /// Heartbeat frames.
    pub fn heartbeats(&self) -> Vec<GatewayFrame> {
        self.frames_of(1)
    }

    /// Sessions started with IDENTIFY.
    pub fn sessions_started(&self) -> usize {
        self.st().sessions_started
    }

    /// The current session's id.
    pub fn session_id(&self) -> Option<String> {
        self.st().session.as_ref().map(|s| s.id.clone())
    }

    /// The last sequence number dispatched in the current session.
    pub fn seq(&self) -> u64 {
        self.st().session.as_ref().map_or(0, |s| s.seq)
    }

    /// Connections that identified or resumed and now receive dispatches.
    pub fn ready_connections(&self) -> usize {
        self.st()
            .conns
            .iter()
            .filter(|c| c.intents.is_some())
            .count()
    }

    /// The most connections that identified or resumed and received dispatches at the same
    /// time (two sessions of one shard each get every event, as on Discord).
    pub fn most_ready_connections(&self) -> usize {
        self.st().most_ready
    }

    /// Waits until a connection has identified or resumed.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.ready_connections() > 0).await
    }

    /// Waits until at least `n` RESUMEs were answered with RESUMED and a connection is live.
    pub async fn wait_resumes(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.resumes().len() >= n && self.ready_connections() > 0
        })
        .await
    }

    /// Sends a dispatch (op 0) with the next sequence number to every live connection; while
    /// none is live it is kept for RESUME replay (or, before the first session, delivered after
    /// READY). MESSAGE_CREATE also stores the message, INTERACTION_CREATE registers the
    /// interaction (its 3-second deadline starts now), THREAD_CREATE stores the channel.
    /// Returns the sequence number (0 when queued before the first session).
    pub fn dispatch(&self, t: &str, d: Value) -> u64 {
        self.shared.dispatch(t, d)
    }

    /// Closes every socket with `code` (4000 = unknown error, resumable). 4007 and 4009 also
    /// end the session, so the client must IDENTIFY again.
    pub fn force_close(&self, code: u16) {
        self.shared.close_all(code);
    }

    /// Sends op 7 RECONNECT to every connection.
    pub fn send_reconnect(&self) {
        let frame = json!({"op": 7, "d": null, "s": null, "t": null}).to_string();
        for c in &self.st().conns {
            let _ = c.tx.send(Out::Text(frame.clone()));
        }
    }

    /// Sends op 9 INVALID_SESSION; when not `resumable`, the session ends.
    pub fn invalidate_session(&self, resumable: bool) {
        let mut st = self.st();
        if !resumable {
            st.session = None;
        }
        let frame = json!({"op": 9, "d": resumable, "s": null, "t": null}).to_string();
        for c in &mut st.conns {
            c.intents = None;
            let _ = c.tx.send(Out::Text(frame.clone()));
        }
    }

    // ---- Payload builders ----

    /// A user object (known users keep their names; unknown ids get `user<id>`).
    pub fn user(&self, id: &str) -> Value {
        user_of(&self.st(), id)
    }

    /// A guild member object for `user_id` (with the nested `user`, as interactions carry it).
    pub fn member(&self, user_id: &str) -> Value {
        let mut m = member_json(None);
        m["user"] = self.user(user_id);
        m["permissions"] = json!("2248473465835073");
        m
    }

    /// A MESSAGE_CREATE payload: `user_id` writes `content` in `channel_id` (guild and thread
    /// messages carry `guild_id` and `member`, DMs neither). Users named in `<@id>` are in
    /// `mentions`.
    pub fn message(&self, channel_id: &str, user_id: &str, content: &str) -> Value {
        let id = self.next_id();
        let guild_id = self.guild_of(channel_id);
        let st = self.st();
        let author = user_of(&st, user_id);
        let mut m = new_message(&id, channel_id, guild_id.clone(), author, content);
        m.mentions = mention_ids(content)
            .iter()
            .map(|u| user_of(&st, u))
            .collect();
        let mut v = m.to_json();
        if guild_id.is_some() {
            v["member"] = member_json(None);
        }
        v["nonce"] = json!(format!("{}", id.parse::<u64>().unwrap_or(0) ^ 0x5a5a));
        v
    }

    /// A guild text message mentioning the bot: `<@BOT> text`.
    pub fn mention(&self, channel_id: &str, user_id: &str, text: &str) -> Value {
        let content = format!("<@{}> {text}", self.shared.cfg.bot_user_id);
        self.message(channel_id, user_id, &content)
    }

    /// A DM from `user_id`: registers the DM channel (type 1) and returns the message (no
    /// `guild_id`, no `member`).
    pub fn dm(&self, dm_channel_id: &str, user_id: &str, content: &str) -> Value {
        let recipient = self.user(user_id);
        self.add_channel(json!({
            "id": dm_channel_id,
            "type": channel_type::DM,
            "last_message_id": null,
            "flags": 0,
            "recipients": [recipient],
        }));
        self.message(dm_channel_id, user_id, content)
    }

    /// A forum post by `user_id` in `forum_id`: the THREAD_CREATE payload (a public thread
    /// owned by the user, `newly_created`) and the MESSAGE_CREATE of its first message, which
    /// has the thread's id. Dispatch both, in that order.
    pub fn forum_post(
        &self,
        forum_id: &str,
        user_id: &str,
        title: &str,
        content: &str,
    ) -> (Value, Value) {
        let guild_id = self.guild_of(forum_id);
        let thread_id = self.next_id();
        let mut thread = thread_json(
            &thread_id,
            guild_id.as_deref(),
            forum_id,
            user_id,
            title,
            channel_type::PUBLIC_THREAD,
        );
        thread["newly_created"] = json!(true);
        thread["applied_tags"] = json!([]);
        thread["member"] = json!({
            "id": thread_id, "user_id": user_id, "flags": 1,
            "join_timestamp": iso8601(now_ms()), "muted": false, "mute_config": null
        });
        self.add_channel(thread.clone());
        let mut msg = self.message(&thread_id, user_id, content);
        msg["id"] = json!(thread_id);
        msg["position"] = json!(0);
        (thread, msg)
    }

    /// The bot's own message as Discord echoes it.
    pub fn own_message(&self, channel_id: &str, content: &str) -> Value {
        let bot = self.shared.cfg.bot_user_id.clone();
        self.message(channel_id, &bot, content)
    }

    /// A message from another bot ([`OTHER_BOT_ID`]).
    pub fn other_bot_message(&self, channel_id: &str, content: &str) -> Value {
        self.message(channel_id, OTHER_BOT_ID, content)
    }

    /// An attachment object for a hosted file (see [`Self::host_attachment`]).
    pub fn attachment(&self, name: &str, bytes: &[u8], content_type: &str) -> Value {
        let (url, size) = self.host_attachment(name, bytes, content_type);
        let id = self.next_id();
        attachment_json(&id, name, size, &url, content_type)
    }

    /// A message with attachments (built with [`Self::attachment`]).
    pub fn with_attachments(mut message: Value, attachments: Vec<Value>) -> Value {
        message["attachments"] = json!(attachments);
        message
    }

    /// An application command interaction (type 2, CHAT_INPUT) for `/name`; in a guild it
    /// carries `member`, in a DM `user`.
    pub fn command(&self, channel_id: &str, user_id: &str, name: &str) -> Value {
        let mut i = self.interaction_base(2, channel_id, user_id);
        let cmd_id = self.next_id();
        i["data"] = json!({"id": cmd_id, "name": name, "type": 1});
        if i["guild_id"].is_string() {
            i["data"]["guild_id"] = i["guild_id"].clone();
        }
        i
    }

    /// A component interaction (type 3): `user_id` pressed the button `custom_id` on message
    /// `message_id` (which must be stored).
    pub fn button_press(&self, message_id: &str, user_id: &str, custom_id: &str) -> Value {
        let msg = self.find_message(message_id).expect("unknown message");
        let mut i = self.interaction_base(3, &msg.channel_id, user_id);
        i["data"] = json!({"custom_id": custom_id, "component_type": 2});
        i["message"] = msg.to_json();
        i
    }

    fn interaction_base(&self, kind: u64, channel_id: &str, user_id: &str) -> Value {
        let cfg = &self.shared.cfg;
        let id = self.next_id();
        let token = format!("aW50ZXJhY3Rpb246{id}:fake-interaction-token");
        let channel = self
            .channel(channel_id)
            .unwrap_or_else(|| json!({"id": channel_id}));
        let guild_id = channel["guild_id"].as_str().map(str::to_string);
        let mut i = json!({
            "id": id,
            "application_id": cfg.application_id,
            "type": kind,
            "channel_id": channel_id,
            "channel": channel,
            "token": token,
            "version": 1,
            "app_permissions": "2248473465835073",
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": cfg.attachment_size_limit,
        });
        if let Some(g) = guild_id {
            i["guild_id"] = json!(g);
            i["guild"] = json!({"id": g, "locale": "en-US", "features": []});
            i["guild_locale"] = json!("en-US");
            i["member"] = self.member(user_id);
            i["authorizing_integration_owners"] = json!({"0": g});
            i["context"] = json!(0);
        } else {
            i["user"] = self.user(user_id);
            i["authorizing_integration_owners"] = json!({"1": user_id});
            i["context"] = json!(1);
        }
        i
    }
}

impl Shared {
    fn st(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap()
    }

    fn dispatch(&self, t: &str, d: Value) -> u64 {
        let mut st = self.st();
        self.observe(&mut st, t, &d);
        dispatch_locked(&mut st, &self.cfg, t, d)
    }

    /// What Discord's state does when an event happens.
    fn observe(&self, st: &mut St, t: &str, d: &Value) {
        match t {
            "MESSAGE_CREATE" => {
                let id = d["id"].as_str().unwrap_or("").to_string();
                if st.messages.iter().any(|m| m.id == id) {
                    return;
                }
                st.messages.push(message_from_json(d));
            }
            "THREAD_CREATE" | "CHANNEL_CREATE" => {
                if let Some(id) = d["id"].as_str() {
                    st.channels.insert(id.to_string(), d.clone());
                }
            }
            "INTERACTION_CREATE" => {
                let id = d["id"].as_str().unwrap_or("").to_string();
                st.interactions.push(FakeInteraction {
                    id,
                    token: d["token"].as_str().unwrap_or("").to_string(),
                    kind: d["type"].as_u64().unwrap_or(0),
                    channel_id: d["channel_id"].as_str().unwrap_or("").to_string(),
                    dispatched: Some(Instant::now()),
                    callbacks: Vec::new(),
                    attempts: Vec::new(),
                    original: None,
                    message_id: d["message"]["id"].as_str().map(str::to_string),
                });
            }
            _ => {}
        }
    }

    fn close_all(&self, code: u16) {
        let mut st = self.st();
        if matches!(code, 4007 | 4009) {
            st.session = None;
        }
        for c in std::mem::take(&mut st.conns) {
            let _ = c.tx.send(Out::Close(code, close_reason(code).into()));
        }
    }
}

fn dispatch_locked(st: &mut St, cfg: &FakeDiscordConfig, t: &str, d: Value) -> u64 {
    let Some(session) = st.session.as_mut() else {
        st.pending.push((t.to_string(), d));
        return 0;
    };
    session.seq += 1;
    let seq = session.seq;
    session.log.push((seq, t.to_string(), d.clone()));
    for c in &st.conns {
        if let Some(intents) = c.intents {
            if let Some(frame) = dispatch_frame(cfg, intents, seq, t, &d) {
                let _ = c.tx.send(Out::Text(frame));
            }
        }
    }
    seq
}

/// The op 0 frame a connection with `intents` receives for `t`, or `None` when its intents
/// exclude the event.
fn dispatch_frame(
    cfg: &FakeDiscordConfig,
    intents: u64,
    seq: u64,
    t: &str,
    d: &Value,
) -> Option<String> {
    let mut d = d.clone();
    if t.starts_with("MESSAGE_") {
        let in_guild = d["guild_id"].is_string();
        let needed = if in_guild {
            intents::GUILD_MESSAGES
        } else {
            intents::DIRECT_MESSAGES
        };
        if intents & needed == 0 {
            return None;
        }
        // Without MESSAGE_CONTENT, Discord blanks content, embeds, attachments and
        // components except in DMs, in messages mentioning the bot and in the bot's own.
        let mentioned = d["mentions"]
            .as_array()
            .is_some_and(|m| m.iter().any(|u| u["id"] == cfg.bot_user_id.as_str()));
        let own = d["author"]["id"] == cfg.bot_user_id.as_str();
        if in_guild && intents & intents::MESSAGE_CONTENT == 0 && !mentioned && !own {
            for (k, empty) in [
                ("content", json!("")),
                ("embeds", json!([])),
                ("attachments", json!([])),
                ("components", json!([])),
            ] {
                if d.get(k).is_some() {
                    d[k] = empty;
                }
            }
        }
    }
    if (t.starts_with("THREAD_") || t.starts_with("CHANNEL_")) && intents & intents::GUILDS == 0 {
        return None;
    }
    Some(json!({"op": 0, "s": seq, "t": t, "d": d}).to_string())
}

fn close_reason(code: u16) -> &'static str {
    match code {
        4000 => "Unknown error.",
        4001 => "Unknown opcode.",
        4002 => "Decode error.",
        4003 => "Not authenticated.",
        4004 => "Authentication failed.",
        4005 => "Already authenticated.",
        4007 => "Invalid seq.",
        4008 => "Rate limited.",
        4009 => "Session timed out.",
        4013 => "Invalid intent(s).",
        4014 => "Disallowed intent(s).",
        _ => "",
    }
}

// ---- REST ----

#[path = "discord_commands.rs"]
mod commands;
use commands::{create_command, put_commands};

fn err(status: u16, code: u64, message: &str) -> (u16, Value) {
    (status, json!({"message": message, "code": code}))
}

fn form_err(field: &str, code: &str, message: &str) -> (u16, Value) {
    (
        400,
        json!({
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {field: {"_errors": [{"code": code, "message": message}]}}
        }),
    )
}

fn unknown_channel() -> (u16, Value) {
    err(404, 10003, "Unknown Channel")
}

fn unknown_message() -> (u16, Value) {
    err(404, 10008, "Unknown Message")
}

/// Maps a path below `/api/v10` to its route template and parameters.
fn route_of(method: &Method, path: &str) -> (String, Vec<String>) {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let p = |i: usize| segs.get(i).map(|s| s.to_string()).unwrap_or_default();
    let template = match segs.as_slice() {
        ["gateway"] => "/gateway",
        ["gateway", "bot"] => "/gateway/bot",
        ["users", "@me"] => "/users/@me",
        ["applications", "@me"] => "/applications/@me",
        ["channels", _] => "/channels/{channel_id}",
        ["channels", _, "messages"] => "/channels/{channel_id}/messages",
        ["channels", _, "messages", _] => "/channels/{channel_id}/messages/{message_id}",
        ["channels", _, "messages", _, "threads"] => {
            "/channels/{channel_id}/messages/{message_id}/threads"
        }
        ["channels", _, "typing"] => "/channels/{channel_id}/typing",
        ["applications", _, "commands"] => "/applications/{application_id}/commands",
        ["applications", _, "guilds", _, "commands"] => {
            "/applications/{application_id}/guilds/{guild_id}/commands"
        }
        ["interactions", _, _, "callback"] => "/interactions/{interaction_id}/{token}/callback",
        ["webhooks", _, _, "messages", "@original"] => {
            "/webhooks/{application_id}/{token}/messages/@original"
        }
        ["webhooks", _, _] => "/webhooks/{application_id}/{token}",
        _ => "",
    };
    let params = match segs.as_slice() {
        ["channels", ..] => vec![p(1), p(3)],
        ["applications", _, "guilds", ..] => vec![p(1), p(3)],
        ["applications", ..] | ["interactions", ..] | ["webhooks", ..] => vec![p(1), p(2)],
        _ => vec![],
    };
    if template.is_empty() {
        return (String::new(), params);
    }
    (format!("{method} {template}"), params)
}

/// The request as violations name it: method and path, an interaction token replaced by
/// `{token}`.
fn request_name(method: &Method, path: &str) -> String {
    let mut segs: Vec<&str> = path.split('/').collect();
    if matches!(segs.get(1).copied(), Some("interactions" | "webhooks")) && segs.len() > 3 {
        segs[3] = "{token}";
    }
    format!("{method} {}", segs.join("/"))
}

/// The top-level resource a call's rate limit is counted for: the channel, the guild, or the
/// interaction (or webhook) and its token.
fn major_of(path: &str) -> String {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["channels", c, ..] => (*c).to_string(),
        ["applications", _, "guilds", g, ..] | ["guilds", g, ..] => (*g).to_string(),
        ["interactions", i, t, ..] | ["webhooks", i, t, ..] => format!("{i}/{t}"),
        _ => String::new(),
    }
}

/// Whether a path is an interaction endpoint (a callback, or the webhook of an interaction
/// token): the global rate limit does not bind them.
fn is_interaction(path: &str) -> bool {
    path.starts_with("/interactions/") || path.starts_with("/webhooks/")
}

async fn api(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = uri
        .path()
        .strip_prefix("/api/v10")
        .unwrap_or(uri.path())
        .to_string();
    let (route, params) = route_of(&method, &path);
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let audit_log_reason = headers
        .get("x-audit-log-reason")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let request = request_name(&method, &path);
    let spec = discord_spec::check(
        method.as_str(),
        &path,
        &query,
        content_type.as_deref(),
        &body,
    );
    // Interaction callbacks and webhook routes authenticate with the token in the path.
    let token_route = route.contains("{token}");
    let authed = authorization.as_deref() == Some(&format!("Bot {}", shared.cfg.token));
    let mut limit_headers = Vec::new();
    let (status, response) = if !token_route && !authed {
        err(401, 0, "401: Unauthorized")
    } else if let Some(spec_route) = spec.route.clone() {
        // Rate limits are counted per route the way Discord names it in the fake's routes.
        let limit_route = if route.is_empty() {
            spec_route
        } else {
            route.clone()
        };
        let admission = shared
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .admit(
                &limit_route,
                &major_of(&path),
                is_interaction(&path),
                Instant::now(),
            );
        match admission {
            Admission::Limited {
                retry_after,
                global,
                headers,
                violation,
            } => {
                limit_headers = headers;
                if let Some(rule) = violation {
                    shared.rules.record(rule, &request);
                }
                (
                    429,
                    json!({"message": "You are being rate limited.", "retry_after": retry_after,
                           "global": global}),
                )
            }
            Admission::Pass(headers) => {
                limit_headers = headers;
                if !spec.broken.is_empty() {
                    for rule in &spec.broken {
                        shared.rules.record(rule.clone(), &request);
                    }
                    form_err("_errors", "SPEC_VIOLATION", &spec.broken.join("; "))
                } else if route.is_empty() {
                    eprintln!("the fake Discord does not serve {request}");
                    err(404, 0, "404: Not Found")
                } else {
                    let stall = {
                        let mut st = shared.st();
                        match st.stalls.get_mut(&route) {
                            Some((n, delay)) if *n > 0 => {
                                *n -= 1;
                                Some(*delay)
                            }
                            _ => None,
                        }
                    };
                    if let Some(delay) = stall {
                        tokio::time::sleep(delay).await;
                    }
                    let answer = handle(&shared, &request, &route, &params, &query, &body_json);
                    let late = {
                        let mut st = shared.st();
                        match st.late.get_mut(&route) {
                            Some((n, delay)) if *n > 0 => {
                                *n -= 1;
                                Some(*delay)
                            }
                            _ => None,
                        }
                    };
                    if let Some(delay) = late {
                        tokio::time::sleep(delay).await;
                    }
                    answer
                }
            }
        }
    } else {
        for rule in &spec.broken {
            shared.rules.record(rule.clone(), &request);
        }
        err(404, 0, "404: Not Found")
    };
    shared.st().calls.push(RestCall {
        method: method.to_string(),
        path: path.clone(),
        route: route.clone(),
        query,
        body: body_json,
        authorization,
        audit_log_reason,
        at: Instant::now(),
        status,
        response: response.clone(),
    });
    let mut resp = if status == 204 {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (
            StatusCode::from_u16(status).unwrap(),
            [(header::CONTENT_TYPE, "application/json")],
            response.to_string(),
        )
            .into_response()
    };
    let h = resp.headers_mut();
    for (name, value) in limit_headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    resp
}

fn handle(
    shared: &Shared,
    request: &str,
    route: &str,
    params: &[String],
    query: &HashMap<String, String>,
    body: &Value,
) -> (u16, Value) {
    let cfg = &shared.cfg;
    let (method, template) = route.split_once(' ').unwrap();
    let a = params.first().cloned().unwrap_or_default();
    let b = params.get(1).cloned().unwrap_or_default();
    match (method, template) {
        ("GET", "/gateway") => (200, json!({"url": shared.base.replacen("http", "ws", 1)})),
        ("GET", "/gateway/bot") => (
            200,
            json!({
                "url": shared.base.replacen("http", "ws", 1),
                "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999,
                                        "reset_after": 14_400_000, "max_concurrency": 1}
            }),
        ),
        ("GET", "/users/@me") => {
            let mut u = user_json(&cfg.bot_user_id, &cfg.bot_username, true);
            u["verified"] = json!(true);
            u["mfa_enabled"] = json!(false);
            u["email"] = Value::Null;
            u["flags"] = json!(0);
            u["locale"] = json!("en-US");
            (200, u)
        }
        ("GET", "/applications/@me") => (200, application_json(cfg)),
        ("GET", "/channels/{channel_id}") => match shared.st().channels.get(&a) {
            Some(c) => (200, c.clone()),
            None => unknown_channel(),
        },
        ("POST", "/channels/{channel_id}/typing") => {
            let mut st = shared.st();
            if !st.channels.contains_key(&a) {
                return unknown_channel();
            }
            st.typing.push(Typing {
                channel_id: a,
                at: Instant::now(),
            });
            (204, Value::Null)
        }
        ("GET", "/channels/{channel_id}/messages") => history(shared, &a, query),
        ("POST", "/channels/{channel_id}/messages") => create_message(shared, request, &a, body),
        ("PATCH", "/channels/{channel_id}/messages/{message_id}") => {
            edit_message(shared, request, &a, &b, body)
        }
        ("GET", "/channels/{channel_id}/messages/{message_id}") => {
            let st = shared.st();
            match st
                .messages
                .iter()
                .find(|m| m.id == b && m.channel_id == a && !m.deleted)
            {
                Some(m) => (200, message_json(&st, m)),
                None => unknown_message(),
            }
        }
        ("DELETE", "/channels/{channel_id}/messages/{message_id}") => {
            let mut st = shared.st();
            let Some(m) = st
                .messages
                .iter_mut()
                .find(|m| m.id == b && m.channel_id == a && !m.deleted)
            else {
                return unknown_message();
            };
            m.deleted = true;
            let d = json!({"id": m.id, "channel_id": m.channel_id, "guild_id": m.guild_id});
            if cfg.echo_bot_events {
                dispatch_locked(&mut st, cfg, "MESSAGE_DELETE", d);
            }
            (204, Value::Null)
        }
        ("POST", "/channels/{channel_id}/messages/{message_id}/threads") => {
            start_thread(shared, &a, &b, body)
        }
        ("PUT", "/applications/{application_id}/commands") => {
            put_commands(shared, request, &a, None, body)
        }
        ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands") => {
            put_commands(shared, request, &a, Some(b), body)
        }
        ("POST", "/applications/{application_id}/commands") => {
            create_command(shared, request, &a, None, body)
        }
        ("POST", "/applications/{application_id}/guilds/{guild_id}/commands") => {
            create_command(shared, request, &a, Some(b), body)
        }
        ("POST", "/interactions/{interaction_id}/{token}/callback") => {
            interaction_callback(shared, request, &a, &b, body)
        }
        ("PATCH", "/webhooks/{application_id}/{token}/messages/@original") => {
            edit_original(shared, request, &a, &b, body)
        }
        ("GET", "/webhooks/{application_id}/{token}/messages/@original") => {
            let st = shared.st();
            let original = st
                .interactions
                .iter()
                .find(|i| i.token == b)
                .and_then(|i| i.original.clone());
            match original.and_then(|id| st.messages.iter().find(|m| m.id == id)) {
                Some(m) => (200, m.to_json()),
                None => unknown_message(),
            }
        }
        ("POST", "/webhooks/{application_id}/{token}") => followup(shared, request, &a, &b, body),
        _ => err(405, 0, "405: Method Not Allowed"),
    }
}

/// Records that `request` broke `rule` and gives Discord's answer to it.
fn refuse(shared: &Shared, request: &str, rule: String, answer: (u16, Value)) -> (u16, Value) {
    shared.rules.record(rule, request);
    answer
}

/// Checks `content` and `components` against the limits Discord's docs give in prose
/// ("Create Message", "Message Components"); `Some` is Discord's answer, and the rule is
/// recorded.
fn validate_message(shared: &Shared, request: &str, body: &Value) -> Option<(u16, Value)> {
    let broken = |rule: String, answer| Some(refuse(shared, request, rule, answer));
    if let Some(c) = body["content"].as_str() {
        let n = c.chars().count();
        if n > MAX_CONTENT_CHARS {
            return broken(
                format!("discord: a message's content is at most 2,000 characters (this one {n})"),
                form_err(
                    "content",
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 2000 or fewer in length.",
                ),
            );
        }
    }
    if let Some(rows) = body["components"].as_array() {
        if rows.len() > MAX_ACTION_ROWS {
            return broken(
                format!(
                    "discord: a message has at most 5 action rows (this one {})",
                    rows.len()
                ),
                form_err(
                    "components",
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 5 or fewer in length.",
                ),
            );
        }
        for row in rows {
            let items = row["components"].as_array().cloned().unwrap_or_default();
            if row["type"] != 1 || items.is_empty() || items.len() > MAX_ROW_BUTTONS {
                return broken(
                    format!(
                        "discord: an action row holds 1 to 5 buttons (this one {})",
                        items.len()
                    ),
                    form_err(
                        "components",
                        "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                        "An action row must hold 1 to 5 components.",
                    ),
                );
            }
            for it in items {
                let link = it["style"] == 5;
                let id_len = it["custom_id"].as_str().map(|s| s.chars().count());
                if it["type"] == 2 && !link && !matches!(id_len, Some(1..=MAX_CUSTOM_ID_CHARS)) {
                    return broken(
                        format!(
                            "discord: a button's custom_id is 1 to 100 characters (this one {})",
                            id_len.unwrap_or(0)
                        ),
                        form_err(
                            "components",
                            "BASE_TYPE_BAD_LENGTH",
                            "custom_id must be between 1 and 100 in length.",
                        ),
                    );
                }
                if it["label"].as_str().is_some_and(|l| l.chars().count() > 80) {
                    return broken(
                        "discord: a button's label is at most 80 characters".into(),
                        form_err(
                            "components",
                            "BASE_TYPE_MAX_LENGTH",
                            "Must be 80 or fewer in length.",
                        ),
                    );
                }
            }
        }
    }
    None
}

fn create_message(shared: &Shared, request: &str, channel_id: &str, body: &Value) -> (u16, Value) {
    let cfg = &shared.cfg;
    if let Some(e) = validate_message(shared, request, body) {
        return e;
    }
    let mut st = shared.st();
    let Some(channel) = st.channels.get(channel_id).cloned() else {
        return unknown_channel();
    };
    if channel["type"] == channel_type::GUILD_FORUM {
        return err(400, 50024, "Cannot execute action on this channel type");
    }
    let content = body["content"].as_str().unwrap_or("");
    let empty = |k: &str| body[k].as_array().is_none_or(|a| a.is_empty());
    if content.is_empty() && empty("embeds") && empty("components") && empty("sticker_ids") {
        drop(st);
        return refuse(
            shared,
            request,
            "discord: a message has content, an embed, a component or a sticker (50006)".into(),
            err(400, 50006, "Cannot send an empty message"),
        );
    }
    let mut reference = None;
    if body["message_reference"].is_object() {
        let r = &body["message_reference"];
        let mid = r["message_id"].as_str().unwrap_or("");
        let ref_channel = r["channel_id"].as_str().unwrap_or(channel_id);
        let exists = st
            .messages
            .iter()
            .any(|m| m.id == mid && m.channel_id == ref_channel && !m.deleted);
        if !exists && r["fail_if_not_exists"] != false {
            return form_err(
                "message_reference",
                "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                "Unknown message",
            );
        }
        reference = Some(json!({
            "type": 0,
            "channel_id": ref_channel,
            "message_id": mid,
            "guild_id": channel["guild_id"],
        }));
    }
    let id = next_snowflake(&mut st).to_string();
    let author = user_json(&cfg.bot_user_id, &cfg.bot_username, true);
    let guild_id = channel["guild_id"].as_str().map(str::to_string);
    let mut m = new_message(&id, channel_id, guild_id, author, content);
    m.components = body["components"].as_array().cloned().unwrap_or_default();
    m.embeds = body["embeds"].as_array().cloned().unwrap_or_default();
    m.flags = body["flags"].as_u64().unwrap_or(0) & !FLAG_EPHEMERAL;
    if reference.is_some() {
        m.kind = 19;
        m.message_reference = reference;
    }
    m.mentions = mention_ids(content)
        .iter()
        .map(|u| user_of(&st, u))
        .collect();
    let out = message_json(&st, &m);
    st.messages.push(m);
    if let Some(c) = st.channels.get_mut(channel_id) {
        c["last_message_id"] = json!(id);
    }
    if cfg.echo_bot_events {
        let mut echo = out.clone();
        if echo["guild_id"].is_string() {
            echo["member"] = member_json(None);
        }
        dispatch_locked(&mut st, cfg, "MESSAGE_CREATE", echo);
    }
    (200, out)
}

/// The message object as REST answers carry it: a reply (type 19) or thread starter (type 21)
/// also has `referenced_message`, the message its `message_reference` names (`null` when that
/// message was deleted), as Discord documents.
fn message_json(st: &St, m: &FakeMessage) -> Value {
    let mut v = m.to_json();
    if matches!(m.kind, 19 | 21) {
        if let Some(r) = &m.message_reference {
            let referenced = st
                .messages
                .iter()
                .find(|x| Some(x.id.as_str()) == r["message_id"].as_str() && !x.deleted)
                .map(FakeMessage::to_json);
            v["referenced_message"] = referenced.unwrap_or(Value::Null);
        }
    }
    v
}

fn apply_edit(m: &mut FakeMessage, body: &Value) {
    if let Some(o) = body.as_object() {
        if o.contains_key("content") {
            m.content = body["content"].as_str().unwrap_or("").to_string();
        }
        if o.contains_key("components") {
            m.components = body["components"].as_array().cloned().unwrap_or_default();
        }
        if o.contains_key("embeds") {
            m.embeds = body["embeds"].as_array().cloned().unwrap_or_default();
        }
    }
    m.edit_times.push(Instant::now());
    m.history.push(m.content.clone());
}

fn edit_message(
    shared: &Shared,
    request: &str,
    channel_id: &str,
    mid: &str,
    body: &Value,
) -> (u16, Value) {
    let cfg = &shared.cfg;
    if let Some(e) = validate_message(shared, request, body) {
        return e;
    }
    let mut st = shared.st();
    let Some(m) = st
        .messages
        .iter_mut()
        .find(|m| m.id == mid && m.channel_id == channel_id && !m.deleted)
    else {
        return unknown_message();
    };
    if m.author_id() != cfg.bot_user_id {
        return err(403, 50005, "Cannot edit a message authored by another user");
    }
    apply_edit(m, body);
    let out = m.to_json();
    if cfg.echo_bot_events {
        dispatch_locked(&mut st, cfg, "MESSAGE_UPDATE", out.clone());
    }
    (200, out)
}

fn history(shared: &Shared, channel_id: &str, query: &HashMap<String, String>) -> (u16, Value) {
    let st = shared.st();
    if !st.channels.contains_key(channel_id) {
        return unknown_channel();
    }
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return form_err(
            "limit",
            "NUMBER_TYPE_MAX",
            "int value should be less than or equal to 100.",
        );
    }
    let num = |k: &str| query.get(k).and_then(|v| v.parse::<u64>().ok());
    let (before, after) = (num("before"), num("after"));
    let mut v: Vec<&FakeMessage> = st
        .messages
        .iter()
        .filter(|m| m.channel_id == channel_id && !m.deleted && !m.ephemeral())
        .filter(|m| {
            let id: u64 = m.id.parse().unwrap_or(0);
            before.is_none_or(|b| id < b) && after.is_none_or(|a| id > a)
        })
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.id.parse::<u64>().unwrap_or(0)));
    if after.is_some() && before.is_none() {
        // With `after`, Discord returns the messages right after it (still newest first).
        let n = v.len();
        v = v.split_off(n.saturating_sub(limit));
    } else {
        v.truncate(limit);
    }
    (
        200,
        json!(v.iter().map(|m| message_json(&st, m)).collect::<Vec<_>>()),
    )
}

fn start_thread(shared: &Shared, channel_id: &str, mid: &str, body: &Value) -> (u16, Value) {
    let cfg = &shared.cfg;
    let name = body["name"].as_str().unwrap_or("");
    if !(1..=100).contains(&name.chars().count()) {
        return form_err(
            "name",
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 100 in length.",
        );
    }
    let mut st = shared.st();
    let Some(channel) = st.channels.get(channel_id).cloned() else {
        return unknown_channel();
    };
    let kind = channel["type"].as_u64().unwrap_or(0);
    if kind != channel_type::GUILD_TEXT && kind != channel_type::GUILD_ANNOUNCEMENT {
        return err(400, 50024, "Cannot execute action on this channel type");
    }
    let Some(pos) = st
        .messages
        .iter()
        .position(|m| m.id == mid && m.channel_id == channel_id && !m.deleted)
    else {
        return unknown_message();
    };
    if st.messages[pos].thread_id.is_some() {
        return err(
            400,
            160004,
            "A thread has already been created for this message",
        );
    }
    // A thread started from a message has the message's id.
    let thread_id = mid.to_string();
    let guild_id = channel["guild_id"].as_str().map(str::to_string);
    let mut thread = thread_json(
        &thread_id,
        guild_id.as_deref(),
        channel_id,
        &cfg.bot_user_id,
        name,
        channel_type::PUBLIC_THREAD,
    );
    if let Some(d) = body["auto_archive_duration"].as_u64() {
        thread["thread_metadata"]["auto_archive_duration"] = json!(d);
    }
    thread["member"] = json!({
        "id": thread_id, "user_id": cfg.bot_user_id, "flags": 1,
        "join_timestamp": iso8601(now_ms()), "muted": false, "mute_config": null
    });
    st.messages[pos].thread_id = Some(thread_id.clone());
    st.channels.insert(thread_id.clone(), thread.clone());
    // The thread opens with a THREAD_STARTER_MESSAGE (type 21) pointing at the parent message.
    let starter_id = next_snowflake(&mut st).to_string();
    let author = st.messages[pos].author.clone();
    let mut starter = new_message(&starter_id, &thread_id, guild_id.clone(), author, "");
    starter.kind = 21;
    starter.message_reference = Some(json!({
        "type": 0, "channel_id": channel_id, "message_id": mid, "guild_id": guild_id
    }));
    st.messages.push(starter);
    st.threads.push(ThreadStart {
        parent_id: channel_id.to_string(),
        message_id: mid.to_string(),
        thread_id: thread_id.clone(),
        name: name.to_string(),
        auto_archive_duration: body["auto_archive_duration"].as_u64(),
        at: Instant::now(),
    });
    if cfg.echo_bot_events {
        let mut d = thread.clone();
        d["newly_created"] = json!(true);
        dispatch_locked(&mut st, cfg, "THREAD_CREATE", d);
    }
    (201, thread)
}

fn interaction_callback(
    shared: &Shared,
    request: &str,
    id: &str,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    let cfg = &shared.cfg;
    let kind = body["type"].as_u64().unwrap_or(0);
    let data = body["data"].clone();
    if let Some(e) = validate_message(shared, request, &data) {
        return e;
    }
    let mut st = shared.st();
    let bot = user_of(&st, &cfg.bot_user_id);
    let Some(pos) = st
        .interactions
        .iter()
        .position(|i| i.id == id && i.token == token)
    else {
        return err(404, 10062, "Unknown interaction");
    };
    st.interactions[pos].attempts.push(Instant::now());
    let waited = st.interactions[pos].dispatched.map(|d| d.elapsed());
    if let Some(waited) = waited.filter(|w| *w > INTERACTION_DEADLINE) {
        drop(st);
        return refuse(
            shared,
            request,
            format!(
                "discord: an interaction's initial response comes within 3 s (this one after \
                 {:.2} s; Discord answers 10062 Unknown interaction)",
                waited.as_secs_f64()
            ),
            err(404, 10062, "Unknown interaction"),
        );
    }
    if !st.interactions[pos].callbacks.is_empty() {
        drop(st);
        return refuse(
            shared,
            request,
            "discord: an interaction has one initial response (40060)".into(),
            err(400, 40060, "Interaction has already been acknowledged."),
        );
    }
    let ikind = st.interactions[pos].kind;
    if matches!(kind, 6 | 7) && ikind != 3 {
        drop(st);
        return refuse(
            shared,
            request,
            format!("discord: response type {kind} is for component interactions only"),
            form_err(
                "type",
                "INTERACTION_RESPONSE_TYPE_INVALID",
                "Invalid response type",
            ),
        );
    }
    if !matches!(kind, 1 | 4 | 5 | 6 | 7 | 8 | 9) {
        drop(st);
        return refuse(
            shared,
            request,
            format!("discord: {kind} is not an interaction response type"),
            form_err(
                "type",
                "BASE_TYPE_CHOICES",
                "Value must be one of {1, 4, 5, 6, 7, 8, 9, 10, 12}.",
            ),
        );
    }
    let channel_id = st.interactions[pos].channel_id.clone();
    let guild_id = st
        .channels
        .get(&channel_id)
        .and_then(|c| c["guild_id"].as_str().map(str::to_string));
    st.interactions[pos]
        .callbacks
        .push((kind, data.clone(), Instant::now()));
    match kind {
        4 | 5 => {
            let mid = next_snowflake(&mut st).to_string();
            let content = if kind == 4 {
                data["content"].as_str().unwrap_or("")
            } else {
                ""
            };
            let mut m = new_message(&mid, &channel_id, guild_id, bot, content);
            m.kind = 20;
            m.flags = data["flags"].as_u64().unwrap_or(0);
            if kind == 5 {
                // A deferred response shows "… is thinking" (LOADING) until edited.
                m.flags |= 1 << 7;
            }
            m.components = data["components"].as_array().cloned().unwrap_or_default();
            m.embeds = data["embeds"].as_array().cloned().unwrap_or_default();
            m.interaction_token = Some(token.to_string());
            m.history = vec![m.content.clone()];
            st.messages.push(m);
            st.interactions[pos].original = Some(mid);
        }
        7 => {
            let target = st.interactions[pos].message_id.clone();
            if let Some(m) = st
                .messages
                .iter_mut()
                .find(|m| Some(&m.id) == target.as_ref())
            {
                apply_edit(m, &data);
            }
        }
        _ => {}
    }
    (204, Value::Null)
}

fn edit_original(
    shared: &Shared,
    request: &str,
    app: &str,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    if app != shared.cfg.application_id {
        return err(404, 10015, "Unknown Webhook");
    }
    if let Some(e) = validate_message(shared, request, body) {
        return e;
    }
    let mut st = shared.st();
    let Some(i) = st.interactions.iter().find(|i| i.token == token).cloned() else {
        return err(404, 10015, "Unknown Webhook");
    };
    // A type 6/7 callback makes the component's message the original.
    let target = i.original.clone().or_else(|| {
        i.callbacks
            .iter()
            .any(|c| matches!(c.0, 6 | 7))
            .then(|| i.message_id.clone())
            .flatten()
    });
    let Some(m) = st
        .messages
        .iter_mut()
        .find(|m| Some(&m.id) == target.as_ref())
    else {
        return unknown_message();
    };
    apply_edit(m, body);
    m.flags &= !(1 << 7);
    (200, m.to_json())
}

fn followup(shared: &Shared, request: &str, app: &str, token: &str, body: &Value) -> (u16, Value) {
    if app != shared.cfg.application_id {
        return err(404, 10015, "Unknown Webhook");
    }
    if let Some(e) = validate_message(shared, request, body) {
        return e;
    }
    let mut st = shared.st();
    let Some(i) = st.interactions.iter().find(|i| i.token == token).cloned() else {
        return err(404, 10015, "Unknown Webhook");
    };
    if i.callbacks.is_empty() {
        return err(404, 10015, "Unknown Webhook");
    }
    let guild_id = st
        .channels
        .get(&i.channel_id)
        .and_then(|c| c["guild_id"].as_str().map(str::to_string));
    let mid = next_snowflake(&mut st).to_string();
    let bot = user_of(&st, &shared.cfg.bot_user_id);
    let content = body["content"].as_str().unwrap_or("");
    let mut m = new_message(&mid, &i.channel_id, guild_id, bot, content);
    m.flags = body["flags"].as_u64().unwrap_or(0);
    m.components = body["components"].as_array().cloned().unwrap_or_default();
    m.interaction_token = Some(token.to_string());
    let out = m.to_json();
    st.messages.push(m);
    (200, out)
}

// ---- CDN ----

async fn cdn(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let found = shared.st().attachments.get(uri.path()).cloned();
    let status = match (&found, &method) {
        (Some(_), &Method::GET | &Method::HEAD) => 200,
        (Some(_), _) => 405,
        (None, _) => 404,
    };
    shared.st().cdn_requests.push(CdnRequest {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        authorization: headers
            .get(header::AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        status,
        at: Instant::now(),
    });
    match (found, status) {
        (Some((bytes, ct)), 200) => {
            let body = if method == Method::HEAD {
                Vec::new()
            } else {
                bytes.clone()
            };
            (
                [
                    (header::CONTENT_TYPE, ct),
                    (header::CONTENT_LENGTH, bytes.len().to_string()),
                    (header::CACHE_CONTROL, "public, max-age=31536000".into()),
                ],
                body,
            )
                .into_response()
        }
        // The CDN answers unknown paths with a plain-text 404.
        (_, s) => (StatusCode::from_u16(s).unwrap(), "404: Not Found").into_response(),
    }
}

// ---- Gateway ----

async fn gateway(State(shared): State<Arc<Shared>>, uri: Uri, ws: WebSocketUpgrade) -> Response {
    let q = uri.query().unwrap_or("").to_string();
    ws.on_upgrade(move |socket| serve_socket(shared, socket, q))
}

async fn serve_socket(shared: Arc<Shared>, mut socket: WebSocket, query: String) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut st = shared.st();
        st.opened += 1;
        st.connect_queries.push(query);
        let id = st.opened;
        st.conns.push(Conn {
            id,
            tx: tx.clone(),
            intents: None,
        });
        id
    };
    let hello = json!({
        "op": 10, "s": null, "t": null,
        "d": {"heartbeat_interval": shared.cfg.heartbeat_interval.as_millis() as u64,
              "_trace": ["[\"gateway-prd-fake-1\",{\"micros\":0.0}]"]}
    });
    let mut alive = socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_ok();
    let mut identified = false;
    while alive {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Out::Text(t)) => alive = socket.send(Message::Text(t.into())).await.is_ok(),
                Some(Out::Close(code, reason)) => {
                    let frame = CloseFrame { code, reason: reason.into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    break;
                }
                None => break,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if let Some(close) = on_frame(&shared, id, &tx, &mut identified, t.as_str()) {
                        let frame = CloseFrame { code: close, reason: close_reason(close).into() };
                        let _ = socket.send(Message::Close(Some(frame))).await;
                        break;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    // Clients send JSON text; ETF and compressed client frames are not modelled.
                    let frame = CloseFrame { code: 4002, reason: close_reason(4002).into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    break;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    shared.st().conns.retain(|c| c.id != id);
}

/// Handles one client frame; `Some(code)` closes the socket with that code.
fn on_frame(
    shared: &Shared,
    conn: usize,
    tx: &mpsc::UnboundedSender<Out>,
    identified: &mut bool,
    text: &str,
) -> Option<u16> {
    let cfg = &shared.cfg;
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Some(4002);
    };
    let Some(op) = v["op"].as_u64() else {
        return Some(4002);
    };
    let d = v["d"].clone();
    let mut st = shared.st();
    st.frames.push(GatewayFrame {
        connection: conn,
        op,
        d: d.clone(),
        at: Instant::now(),
    });
    let send = |t: Value| {
        let _ = tx.send(Out::Text(t.to_string()));
    };
    let token_ok = |d: &Value| {
        let t = d["token"].as_str().unwrap_or("");
        t.strip_prefix("Bot ").unwrap_or(t) == cfg.token
    };
    match op {
        1 => {
            send(json!({"op": 11, "s": null, "t": null, "d": null}));
            None
        }
        2 => {
            if *identified {
                return Some(4005);
            }
            if !token_ok(&d) {
                return Some(4004);
            }
            let Some(wanted) = d["intents"].as_u64() else {
                return Some(4013);
            };
            if wanted & intents::MESSAGE_CONTENT != 0 && !cfg.message_content_enabled {
                return Some(4014);
            }
            *identified = true;
            st.sessions_started += 1;
            let session_id = format!("{:032x}", now_ms() as u128 * 0x2545_f491 + conn as u128);
            st.session = Some(Session {
                id: session_id.clone(),
                intents: wanted,
                seq: 0,
                log: Vec::new(),
            });
            if let Some(c) = st.conns.iter_mut().find(|c| c.id == conn) {
                c.intents = Some(wanted);
            }
            note_ready(&mut st);
            let guilds: Vec<Value> = cfg
                .guilds
                .iter()
                .map(|g| json!({"id": g.id, "unavailable": true}))
                .collect();
            let mut user = user_json(&cfg.bot_user_id, &cfg.bot_username, true);
            user["verified"] = json!(true);
            user["mfa_enabled"] = json!(false);
            user["email"] = Value::Null;
            user["flags"] = json!(0);
            let ready = json!({
                "v": 10,
                "user_settings": {},
                "user": user,
                "guilds": guilds,
                "session_type": "normal",
                "session_id": session_id,
                "resume_gateway_url": shared.base.replacen("http", "ws", 1),
                "shard": d.get("shard").cloned().unwrap_or(json!([0, 1])),
                "application": {"id": cfg.application_id, "flags": application_flags(cfg)},
                "private_channels": [],
                "presences": [],
                "relationships": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": ["fake"],
                "auth": {},
                "_trace": ["[\"gateway-prd-fake-1\",{\"micros\":0.0}]"]
            });
            dispatch_locked(&mut st, cfg, "READY", ready);
            for g in &cfg.guilds {
                let gc = guild_create_json(cfg, g, &st);
                dispatch_locked(&mut st, cfg, "GUILD_CREATE", gc);
            }
            for (t, d) in std::mem::take(&mut st.pending) {
                drop(st);
                shared.dispatch(&t, d);
                st = shared.st();
            }
            None
        }
        6 => {
            if !token_ok(&d) {
                return Some(4004);
            }
            let sid = d["session_id"].as_str().unwrap_or("");
            let seq = d["seq"].as_u64().unwrap_or(0);
            let valid = st
                .session
                .as_ref()
                .is_some_and(|s| s.id == sid && seq <= s.seq);
            if !valid {
                send(json!({"op": 9, "s": null, "t": null, "d": false}));
                return None;
            }
            *identified = true;
            let session = st.session.as_ref().unwrap();
            let session_intents = session.intents;
            let replay: Vec<String> = session
                .log
                .iter()
                .filter(|(s, _, _)| *s > seq)
                .filter_map(|(s, t, d)| dispatch_frame(cfg, session_intents, *s, t, d))
                .collect();
            for frame in replay {
                let _ = tx.send(Out::Text(frame));
            }
            // RESUMED goes to this connection only; it takes the next sequence number.
            let session = st.session.as_mut().unwrap();
            session.seq += 1;
            let s = session.seq;
            let resumed = json!({"_trace": ["[\"gateway-prd-fake-1\",{\"micros\":0.0}]"]});
            session.log.push((s, "RESUMED".into(), resumed.clone()));
            send(json!({"op": 0, "s": s, "t": "RESUMED", "d": resumed}));
            if let Some(c) = st.conns.iter_mut().find(|c| c.id == conn) {
                c.intents = Some(session_intents);
            }
            note_ready(&mut st);
            None
        }
        3 | 4 | 8 | 31 => {
            if !*identified {
                return Some(4003);
            }
            None
        }
        _ => Some(4001),
    }
}

/// Records how many connections receive dispatches now, if that is the most yet.
fn note_ready(st: &mut St) {
    let ready = st.conns.iter().filter(|c| c.intents.is_some()).count();
    st.most_ready = st.most_ready.max(ready);
}

// ---- JSON shapes ----

fn application_flags(cfg: &FakeDiscordConfig) -> u64 {
    // GATEWAY_PRESENCE_LIMITED | GATEWAY_GUILD_MEMBERS_LIMITED | APPLICATION_COMMAND_BADGE.
    let base = (1 << 13) | (1 << 15) | (1 << 23);
    if cfg.message_content_enabled {
        base | FLAG_GATEWAY_MESSAGE_CONTENT_LIMITED
    } else {
        base
    }
}

/// `integration_types_config` as Discord lists it: one entry per installation context enabled
/// in the portal; a guild install carries its install parameters.
fn integration_types_config(cfg: &FakeDiscordConfig) -> Value {
    let mut config = serde_json::Map::new();
    for t in &cfg.integration_types {
        let entry = if *t == INSTALL_GUILD {
            json!({"oauth2_install_params": {"scopes": ["applications.commands", "bot"],
                                             "permissions": "309237713920"}})
        } else {
            json!({})
        };
        config.insert(t.to_string(), entry);
    }
    Value::Object(config)
}

fn application_json(cfg: &FakeDiscordConfig) -> Value {
    let bot = user_json(&cfg.bot_user_id, &cfg.bot_username, true);
    json!({
        "id": cfg.application_id,
        "name": cfg.bot_username,
        "icon": null,
        "description": "",
        "summary": "",
        "type": null,
        "hook": true,
        "bot_public": true,
        "bot_require_code_grant": false,
        "verify_key": "a7c4e1f0d2b3a4958677a8b9c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293",
        "flags": application_flags(cfg),
        "owner": user_json(USER_ID, "alice", false),
        "team": null,
        "bot": bot,
        "redirect_uris": [],
        "interactions_endpoint_url": null,
        "approximate_guild_count": cfg.guilds.len(),
        "approximate_user_install_count": 0,
        "integration_types_config": integration_types_config(cfg),
        "install_params": {"scopes": ["applications.commands", "bot"],
                           "permissions": "309237713920"},
        "tags": []
    })
}

fn user_json(id: &str, name: &str, bot: bool) -> Value {
    let mut u = json!({
        "id": id,
        "username": name,
        "discriminator": "0",
        "global_name": if bot { Value::Null } else { json!(name) },
        "avatar": null,
        "avatar_decoration_data": null,
        "public_flags": 0,
        "primary_guild": null,
        "clan": null,
        "collectibles": null,
        "banner": null,
        "accent_color": null,
    });
    if bot {
        u["bot"] = json!(true);
    }
    u
}

fn user_of(st: &St, id: &str) -> Value {
    st.users
        .get(id)
        .cloned()
        .unwrap_or_else(|| user_json(id, &format!("user{id}"), false))
}

fn member_json(nick: Option<&str>) -> Value {
    json!({
        "roles": [],
        "nick": nick,
        "avatar": null,
        "banner": null,
        "premium_since": null,
        "joined_at": "2024-04-05T10:00:00.000000+00:00",
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "communication_disabled_until": null,
        "unusual_dm_activity_until": null,
    })
}

fn channel_json(c: &FakeChannel, guild_id: Option<&str>) -> Value {
    if matches!(
        c.kind,
        channel_type::PUBLIC_THREAD | channel_type::PRIVATE_THREAD
    ) {
        return thread_json(
            &c.id,
            guild_id,
            c.parent_id.as_deref().unwrap_or(""),
            c.owner_id.as_deref().unwrap_or(USER_ID),
            &c.name,
            c.kind,
        );
    }
    let mut v = json!({
        "id": c.id,
        "type": c.kind,
        "guild_id": guild_id,
        "name": c.name,
        "position": 0,
        "parent_id": c.parent_id,
        "permission_overwrites": [],
        "nsfw": false,
        "topic": null,
        "last_message_id": null,
        "rate_limit_per_user": 0,
        "flags": 0,
    });
    if c.kind == channel_type::GUILD_FORUM {
        v["available_tags"] = json!([]);
        v["default_reaction_emoji"] = Value::Null;
        v["default_sort_order"] = Value::Null;
        v["default_forum_layout"] = json!(0);
        v["default_thread_rate_limit_per_user"] = json!(0);
    }
    v
}

fn thread_json(
    id: &str,
    guild_id: Option<&str>,
    parent_id: &str,
    owner_id: &str,
    name: &str,
    kind: u64,
) -> Value {
    let now = iso8601(now_ms());
    json!({
        "id": id,
        "type": kind,
        "guild_id": guild_id,
        "parent_id": parent_id,
        "owner_id": owner_id,
        "name": name,
        "last_message_id": null,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "total_message_sent": 0,
        "flags": 0,
        "thread_metadata": {
            "archived": false,
            "auto_archive_duration": 4320,
            "archive_timestamp": now,
            "locked": false,
            "create_timestamp": now,
        },
    })
}

fn guild_create_json(cfg: &FakeDiscordConfig, g: &FakeGuild, st: &St) -> Value {
    let everyone = json!({
        "id": g.id,
        "name": "@everyone",
        "description": null,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
        "hoist": false,
        "icon": null,
        "unicode_emoji": null,
        "position": 0,
        "permissions": "2248473465835073",
        "managed": false,
        "mentionable": false,
        "flags": 0,
    });
    let bot_role_id = format!("{}", g.id.parse::<u64>().unwrap_or(0) + 7);
    let bot_role = json!({
        "id": bot_role_id,
        "name": cfg.bot_username,
        "description": null,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
        "hoist": false,
        "icon": null,
        "unicode_emoji": null,
        "position": 1,
        "permissions": "309237713920",
        "managed": true,
        "mentionable": false,
        "flags": 0,
        "tags": {"bot_id": cfg.bot_user_id},
    });
    let (threads, channels): (Vec<&FakeChannel>, Vec<&FakeChannel>) =
        g.channels.iter().partition(|c| {
            matches!(
                c.kind,
                channel_type::PUBLIC_THREAD | channel_type::PRIVATE_THREAD
            )
        });
    let chan = |c: &FakeChannel| {
        let mut v = st
            .channels
            .get(&c.id)
            .cloned()
            .unwrap_or_else(|| channel_json(c, Some(&g.id)));
        // Channels inside GUILD_CREATE carry no `guild_id`.
        if let Some(o) = v.as_object_mut() {
            o.remove("guild_id");
        }
        v
    };
    let mut bot_member = member_json(None);
    bot_member["user"] = user_json(&cfg.bot_user_id, &cfg.bot_username, true);
    bot_member["roles"] = json!([bot_role_id]);
    // Built in two halves: one `json!` this size exceeds the macro recursion limit.
    let mut guild = json!({
        "id": g.id,
        "name": g.name,
        "icon": null,
        "icon_hash": null,
        "splash": null,
        "discovery_splash": null,
        "banner": null,
        "owner_id": g.owner_id,
        "region": "deprecated",
        "afk_channel_id": null,
        "afk_timeout": 300,
        "widget_enabled": false,
        "widget_channel_id": null,
        "verification_level": 1,
        "default_message_notifications": 1,
        "explicit_content_filter": 2,
        "roles": [everyone, bot_role],
        "emojis": [],
        "stickers": [],
        "features": [],
    });
    let more = json!({
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": TEXT_CHANNEL_ID,
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "public_updates_channel_id": null,
        "safety_alerts_channel_id": null,
        "max_presences": null,
        "max_members": 500000,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
        "vanity_url_code": null,
        "description": null,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "premium_progress_bar_enabled": false,
        "preferred_locale": "en-US",
        "nsfw": false,
        "nsfw_level": 0,
        "hub_type": null,
        "latest_onboarding_question_id": null,
        "incidents_data": null,
        "inventory_settings": null,
        "home_header": null,
        "version": 1_712_345_678_000u64,
        "lazy": true,
    });
    let extra = json!({
        "joined_at": "2024-04-05T10:00:00.000000+00:00",
        "large": false,
        "unavailable": false,
        "member_count": 3,
        "voice_states": [],
        "members": [bot_member],
        "channels": channels.into_iter().map(chan).collect::<Vec<_>>(),
        "threads": threads.into_iter().map(chan).collect::<Vec<_>>(),
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "embedded_activities": [],
        "activity_instances": [],
        "application_command_counts": {},
    });
    for (k, v) in more
        .as_object()
        .unwrap()
        .iter()
        .chain(extra.as_object().unwrap())
    {
        guild[k.as_str()] = v.clone();
    }
    guild
}

fn attachment_json(id: &str, name: &str, size: u64, url: &str, content_type: &str) -> Value {
    json!({
        "id": id,
        "filename": name,
        "size": size,
        "url": url,
        "proxy_url": url,
        "content_type": content_type,
        "content_scan_version": 0,
        "placeholder": null,
        "placeholder_version": 1,
    })
}

fn new_message(
    id: &str,
    channel_id: &str,
    guild_id: Option<String>,
    author: Value,
    content: &str,
) -> FakeMessage {
    FakeMessage {
        id: id.to_string(),
        channel_id: channel_id.to_string(),
        guild_id,
        author,
        kind: 0,
        content: content.to_string(),
        components: Vec::new(),
        embeds: Vec::new(),
        attachments: Vec::new(),
        mentions: Vec::new(),
        message_reference: None,
        flags: 0,
        interaction_token: None,
        created: Instant::now(),
        edit_times: Vec::new(),
        history: vec![content.to_string()],
        deleted: false,
        thread_id: None,
    }
}

fn message_from_json(d: &Value) -> FakeMessage {
    let arr = |k: &str| d[k].as_array().cloned().unwrap_or_default();
    let mut m = new_message(
        d["id"].as_str().unwrap_or(""),
        d["channel_id"].as_str().unwrap_or(""),
        d["guild_id"].as_str().map(str::to_string),
        d["author"].clone(),
        d["content"].as_str().unwrap_or(""),
    );
    m.kind = d["type"].as_u64().unwrap_or(0);
    m.components = arr("components");
    m.embeds = arr("embeds");
    m.attachments = arr("attachments");
    m.mentions = arr("mentions");
    m.message_reference = d.get("message_reference").cloned();
    m.flags = d["flags"].as_u64().unwrap_or(0);
    m
}

/// User ids named in `<@id>` / `<@!id>` mentions.
fn mention_ids(content: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = content;
    while let Some(start) = rest.find("<@") {
        let tail = &rest[start + 2..];
        let tail = tail.strip_prefix('!').unwrap_or(tail);
        let Some(end) = tail.find('>') else { break };
        let id = &tail[..end];
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !out.iter().any(|o| o == id)
        {
            out.push(id.to_string());
        }
        rest = &tail[end..];
    }
    out
}

// ---- Helpers ----

async fn wait_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The next snowflake: the current time in its top bits, so ids sort by creation.
fn next_snowflake(st: &mut St) -> u64 {
    let id = ((now_ms() - DISCORD_EPOCH_MS) << 22).max(st.last_snowflake + 1);
    st.last_snowflake = id;
    id
}

/// Unix milliseconds a snowflake was made at.
pub fn snowflake_ms(id: u64) -> u64 {
    (id >> 22) + DISCORD_EPOCH_MS
}

/// `2024-04-05T10:00:00.123000+00:00`, Discord's timestamp format.
pub fn iso8601(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}000+00:00",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        unix_ms % 1000
    )
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
