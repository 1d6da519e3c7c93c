//! A local fake Slack for the Slack adapter's end-to-end tests, written from Slack's documented
//! payloads rather than from what an adapter would find convenient.
//!
//! One listener on 127.0.0.1 serves:
//! - the Web API at `/api/{method}` (JSON or form bodies, GET query strings, bearer tokens,
//!   Slack's error codes and limits, HTTP 429 with `Retry-After` on demand);
//! - Socket Mode over WebSocket at `/link/` (the URL `apps.connections.open` hands out);
//! - private files at `/files-pri/...` (the bot token gets the bytes, anyone else gets Slack's
//!   HTML sign-in page with status 200);
//! - slash-command `response_url`s at `/commands/...`.
//!
//! Every Web API request is checked against Slack's published spec first (`slack_spec`): what
//! Slack would not read (a JSON body to a form-only method) is not read here either, and every
//! broken rule fails the test when the fake is dropped.
//!
//! [`ForeignHost`] is a second, unrelated listener that records whatever reaches it, so a test
//! can prove that no token ever left Slack's hosts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use base64::Engine;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::rules::Violations;
use crate::slack_spec::RulesCheck;
use crate::slack_users::{user_object, Person};

/// Seconds part of the first `ts` the fake hands out; later ones increase from it.
pub const BASE_TS_SECS: u64 = 1_712_345_678;

/// Slack's limit on `text` in `chat.postMessage` / `chat.update`.
pub const MAX_TEXT_CHARS: usize = 40_000;
/// Slack's limit on `markdown_text`, and on all `markdown` blocks of one message together.
pub const MAX_MARKDOWN_CHARS: usize = 12_000;
/// Slack's limit on blocks per message.
pub const MAX_BLOCKS: usize = 50;
/// Slack's limit on a `section` block's text.
pub const MAX_SECTION_CHARS: usize = 3_000;

/// Who the fake workspace is and how it behaves.
#[derive(Debug, Clone)]
pub struct FakeSlackConfig {
    /// The bot token (`xoxb-…`) every Web API method but `apps.connections.open` accepts.
    pub bot_token: String,
    /// The app-level token (`xapp-…`) that only `apps.connections.open` accepts.
    pub app_token: String,
    /// Workspace id.
    pub team_id: String,
    /// Workspace name (`auth.test`'s `team`).
    pub team_name: String,
    /// Workspace subdomain (`auth.test`'s `url`, slash commands' `team_domain`).
    pub team_domain: String,
    /// The bot's user id (what `<@…>` mentions name).
    pub bot_user_id: String,
    /// The bot's user name (`auth.test`'s `user`).
    pub bot_user_name: String,
    /// The bot's bot id (`B…`).
    pub bot_id: String,
    /// The app id (`A…`).
    pub app_id: String,
    /// Scopes granted to the bot token, reported in `x-oauth-scopes`; methods needing a
    /// missing one answer `missing_scope`.
    pub scopes: Vec<String>,
    /// Whether `chat.startStream` / `appendStream` / `stopStream` exist in this workspace;
    /// `false` makes them answer `unknown_method` (to test the post + edit fallback).
    pub streaming: bool,
    /// Deliver a `message` event for every `chat.postMessage` the bot makes, as Slack does to
    /// an app subscribed to `message.channels` / `message.im`.
    pub echo_bot_messages: bool,
    /// Time between the `disconnect` message and closing the socket in
    /// [`FakeSlack::disconnect_all`].
    pub disconnect_grace: Duration,
    /// Enforce Slack's per-method rate-limit tiers ([`crate::slack_tiers`]); on by default.
    /// Calls into a running Retry-After are violations either way.
    pub tiers: bool,
}

impl Default for FakeSlackConfig {
    fn default() -> Self {
        Self {
            bot_token: "xoxb-1111-2222-fakebottoken".into(),
            app_token: "xapp-1-A1-3333-fakeapptoken".into(),
            team_id: "T1".into(),
            team_name: "Anchor Test".into(),
            team_domain: "anchor-test".into(),
            bot_user_id: "UBOT".into(),
            bot_user_name: "anchorbot".into(),
            bot_id: "BBOT".into(),
            app_id: "A1".into(),
            scopes: [
                "app_mentions:read",
                "assistant:write",
                "channels:history",
                "chat:write",
                "commands",
                "files:read",
                "groups:history",
                "im:history",
                "im:read",
                "im:write",
                "mpim:history",
                "reactions:write",
                "users:read",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            streaming: true,
            echo_bot_messages: true,
            disconnect_grace: Duration::from_millis(100),
            tiers: true,
        }
    }
}

/// One Web API request as the fake received it.
#[derive(Debug, Clone)]
pub struct ApiCall {
    /// The method, e.g. `chat.postMessage`.
    pub method: String,
    /// `GET` or `POST`.
    pub http_method: String,
    /// The request's `content-type`, if any.
    pub content_type: Option<String>,
    /// Query parameters and body merged into one object (form fields as strings, except
    /// JSON-valued ones such as `blocks`, which are parsed).
    pub args: Value,
    /// The token used: the bearer token, or a `token` argument.
    pub token: Option<String>,
    /// When the request arrived.
    pub at: Instant,
    /// HTTP status of the answer (200 or 429).
    pub status: u16,
    /// The JSON body of the answer.
    pub response: Value,
}

impl ApiCall {
    /// True when the answer was `"ok": true`.
    pub fn ok(&self) -> bool {
        self.response["ok"] == true
    }
}

/// A message as Slack stores it, so tests can assert what a user would finally see.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeMessage {
    /// Channel id.
    pub channel: String,
    /// Message timestamp (its id).
    pub ts: String,
    /// Thread parent's `ts` for replies (and for the parent itself when seeded so).
    pub thread_ts: Option<String>,
    /// Author user id (the bot's user id for the bot's messages).
    pub user: Option<String>,
    /// Bot id for messages posted by an app.
    pub bot_id: Option<String>,
    /// App id for messages posted by an app.
    pub app_id: Option<String>,
    /// Message subtype (`file_share`, `bot_message`, …).
    pub subtype: Option<String>,
    /// `text`; for streamed messages, everything streamed so far.
    pub text: String,
    /// Block Kit blocks.
    pub blocks: Vec<Value>,
    /// File objects.
    pub files: Vec<Value>,
    /// Reactions: (name, users).
    pub reactions: Vec<(String, Vec<String>)>,
    /// Started with `chat.startStream` and not yet stopped.
    pub streaming: bool,
    /// Created with `chat.startStream`.
    pub streamed: bool,
    /// How many times `chat.update` changed it.
    pub edits: usize,
    /// `text` after each change (post, update, start/append/stop), oldest first.
    pub history: Vec<String>,
    /// Removed with `chat.delete`.
    pub deleted: bool,
}

impl FakeMessage {
    fn new(channel: &str, ts: &str) -> Self {
        Self {
            channel: channel.into(),
            ts: ts.into(),
            thread_ts: None,
            user: None,
            bot_id: None,
            app_id: None,
            subtype: None,
            text: String::new(),
            blocks: Vec::new(),
            files: Vec::new(),
            reactions: Vec::new(),
            streaming: false,
            streamed: false,
            edits: 0,
            history: Vec::new(),
            deleted: false,
        }
    }

    /// What a user sees: Slack shows only the blocks of a message that has blocks (`text` is
    /// then just the notification fallback); a streamed message shows its streamed text
    /// followed by the blocks given to `chat.stopStream`.
    pub fn visible_text(&self) -> String {
        let blocks = blocks_text(&self.blocks);
        if self.streamed {
            if blocks.is_empty() {
                self.text.clone()
            } else {
                format!("{}\n{}", self.text, blocks)
            }
        } else if self.blocks.is_empty() {
            self.text.clone()
        } else {
            blocks
        }
    }

    /// The `feedback_buttons` elements of this message's `context_actions` blocks, each with
    /// the `block_id` of its block.
    pub fn feedback_buttons(&self) -> Vec<(Option<String>, Value)> {
        self.blocks
            .iter()
            .filter(|b| b["type"] == "context_actions")
            .flat_map(|b| {
                let block_id = b["block_id"].as_str().map(str::to_string);
                b["elements"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|e| e["type"] == "feedback_buttons")
                    .map(move |e| (block_id.clone(), e))
            })
            .collect()
    }

    /// Names of the reactions on this message.
    pub fn reaction_names(&self) -> Vec<String> {
        self.reactions.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The message as Slack's API returns it (`conversations.replies`, `chat.postMessage`).
    pub fn to_json(&self) -> Value {
        let mut m = json!({"type": "message", "text": self.text, "ts": self.ts});
        let o = m.as_object_mut().unwrap();
        if let Some(u) = &self.user {
            o.insert("user".into(), json!(u));
        }
        if let Some(b) = &self.bot_id {
            o.insert("bot_id".into(), json!(b));
        }
        if let Some(a) = &self.app_id {
            o.insert("app_id".into(), json!(a));
        }
        if let Some(s) = &self.subtype {
            o.insert("subtype".into(), json!(s));
        }
        if let Some(t) = &self.thread_ts {
            o.insert("thread_ts".into(), json!(t));
        }
        if !self.blocks.is_empty() {
            o.insert("blocks".into(), json!(self.blocks));
        }
        if !self.files.is_empty() {
            o.insert("files".into(), json!(self.files));
            o.insert("upload".into(), json!(false));
        }
        if !self.reactions.is_empty() {
            let r: Vec<Value> = self
                .reactions
                .iter()
                .map(|(n, u)| json!({"name": n, "users": u, "count": u.len()}))
                .collect();
            o.insert("reactions".into(), json!(r));
        }
        m
    }
}

/// A `chat.postEphemeral` message.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeEphemeral {
    /// Channel id.
    pub channel: String,
    /// The only user who sees it.
    pub user: String,
    /// `text`.
    pub text: String,
    /// Blocks.
    pub blocks: Vec<Value>,
    /// Thread it was shown in.
    pub thread_ts: Option<String>,
    /// The `message_ts` Slack answered with.
    pub ts: String,
}

/// An HTTP request recorded by a file URL, a `response_url` or the [`ForeignHost`].
#[derive(Debug, Clone)]
pub struct HttpRecord {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Every header, lower-case names.
    pub headers: Vec<(String, String)>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// Request body.
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: Instant,
}

impl HttpRecord {
    fn new(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Self {
        Self {
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
            body: body.to_vec(),
            at: Instant::now(),
        }
    }

    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A Socket Mode acknowledgement the app sent.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The acknowledged envelope.
    pub envelope_id: String,
    /// The optional `payload` (an ephemeral answer to a slash command, for example).
    pub payload: Option<Value>,
    /// When it arrived.
    pub at: Instant,
    /// Which connection it came on (1 = the first ever opened).
    pub connection: usize,
}

enum Out {
    Text(String),
    Disconnect(String),
    Drop,
}

struct Conn {
    id: usize,
    tx: mpsc::UnboundedSender<Out>,
}

struct Pushed {
    frame: Value,
    at: Instant,
}

#[derive(Default)]
struct St {
    calls: Vec<ApiCall>,
    rate_limits: HashMap<String, (usize, u64)>,
    limits: crate::slack_tiers::Limits,
    failures: HashMap<String, String>,
    streaming: bool,
    messages: Vec<FakeMessage>,
    ephemerals: Vec<FakeEphemeral>,
    statuses: HashMap<(String, String), Vec<String>>,
    prompts: HashMap<(String, String), Value>,
    titles: HashMap<(String, String), String>,
    users: HashMap<String, Value>,
    files: HashMap<String, (Vec<u8>, String)>,
    redirects: HashMap<String, String>,
    file_requests: Vec<HttpRecord>,
    response_url_posts: Vec<HttpRecord>,
    tickets: Vec<String>,
    conns: Vec<Conn>,
    opened: usize,
    pending: Vec<String>,
    envelopes: HashMap<String, Pushed>,
    acks: Vec<Ack>,
    unexpected_frames: Vec<String>,
    seq_ts: u64,
    seq_file: u64,
    seq_event: u64,
    seq_envelope: u64,
    seq_ticket: u64,
}

struct Shared {
    cfg: FakeSlackConfig,
    base: String,
    st: Mutex<St>,
    /// Every published rule a request broke (see `slack_spec`).
    rules: Violations,
}

/// The fake Slack. Dropping it does not stop the server (it lives as long as the runtime).
/// Dropping the test's last handle fails the test if a request broke one of Slack's published
/// rules (`slack_spec`), naming each.
#[derive(Clone)]
pub struct FakeSlack {
    shared: Arc<Shared>,
    /// Checks the rules when the test's last handle goes; `None` on handles made internally.
    _check: Option<Arc<RulesCheck>>,
}

impl FakeSlack {
    /// Starts the fake on 127.0.0.1 with an ephemeral port.
    pub async fn start(cfg: FakeSlackConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let st = St {
            streaming: cfg.streaming,
            ..St::default()
        };
        let rules = Violations::default();
        let shared = Arc::new(Shared {
            cfg,
            base: format!("http://{addr}"),
            st: Mutex::new(st),
            rules: rules.clone(),
        });
        let app = Router::new()
            .route("/api/{method}", any(api))
            .route("/link", get(link))
            .route("/link/", get(link))
            .route("/files-pri/{*rest}", any(file))
            .route("/commands/{*rest}", post(response_url))
            .with_state(shared.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            shared,
            _check: Some(Arc::new(RulesCheck(rules))),
        }
    }

    /// Starts the fake with the default workspace.
    pub async fn start_default() -> Self {
        Self::start(FakeSlackConfig::default()).await
    }

    fn st(&self) -> MutexGuard<'_, St> {
        self.shared.st.lock().unwrap()
    }

    /// The published rules requests broke so far; a test that breaks one on purpose `take()`s
    /// it.
    pub fn violations(&self) -> &Violations {
        &self.shared.rules
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &FakeSlackConfig {
        &self.shared.cfg
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.shared.base.clone()
    }

    /// The Web API base, for `slack.api_url`: `http://127.0.0.1:PORT/api`.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.shared.base)
    }

    /// A fresh, increasing message timestamp such as `"1712345678.000100"`.
    pub fn next_ts(&self) -> String {
        next_ts(&mut self.st())
    }

    // ---- Web API ----

    /// Makes the next `n` calls of `method` answer HTTP 429 with `Retry-After: secs`.
    pub fn rate_limit(&self, method: &str, n: usize, retry_after_secs: u64) {
        self.st()
            .rate_limits
            .insert(method.to_string(), (n, retry_after_secs));
    }

    /// Makes the next call of `method` answer `{"ok":false,"error":error}`, as Slack answers a
    /// call it refuses (HTTP 200).
    pub fn fail_next(&self, method: &str, error: &str) {
        self.st()
            .failures
            .insert(method.to_string(), error.to_string());
    }

    /// Adds a person from another team (a Slack Connect guest), so `users.info` gives
    /// `team_id: team` for them.
    pub fn add_foreign_user(&self, team: &str, id: &str, name: &str) {
        let u = user_object(&Person {
            team,
            id,
            name,
            display_name: name,
            real_name: name,
            bot: None,
        });
        self.st().users.insert(id.to_string(), u);
    }

    /// Turns the native streaming methods on or off from now on.
    pub fn set_streaming(&self, enabled: bool) {
        self.st().streaming = enabled;
    }

    /// Every Web API call so far, in arrival order.
    pub fn calls(&self) -> Vec<ApiCall> {
        self.st().calls.clone()
    }

    /// The calls of one method, in arrival order.
    pub fn calls_to(&self, method: &str) -> Vec<ApiCall> {
        self.st()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// Waits until at least `n` calls of `method` have been answered.
    pub async fn wait_calls(&self, method: &str, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.calls_to(method).len() >= n).await
    }

    // ---- Messages ----

    /// Every message ever stored, deleted ones included, in creation order.
    pub fn messages(&self) -> Vec<FakeMessage> {
        self.st().messages.clone()
    }

    /// One message by channel and `ts`.
    pub fn find_message(&self, channel: &str, ts: &str) -> Option<FakeMessage> {
        self.st()
            .messages
            .iter()
            .find(|m| m.channel == channel && m.ts == ts)
            .cloned()
    }

    /// The visible (not deleted) messages of a thread, parent first, oldest first.
    pub fn thread_messages(&self, channel: &str, thread_ts: &str) -> Vec<FakeMessage> {
        thread_of(&self.st(), channel, thread_ts)
    }

    /// The visible top-level messages of a channel (not thread replies), oldest first.
    pub fn channel_messages(&self, channel: &str) -> Vec<FakeMessage> {
        let st = self.st();
        let mut v: Vec<FakeMessage> = st
            .messages
            .iter()
            .filter(|m| m.channel == channel && !m.deleted)
            .filter(|m| m.thread_ts.as_deref().is_none_or(|t| t == m.ts))
            .cloned()
            .collect();
        v.sort_by_key(|m| ts_key(&m.ts));
        v
    }

    /// The visible messages the bot posted in a channel (any thread), oldest first.
    pub fn bot_messages(&self, channel: &str) -> Vec<FakeMessage> {
        let bot = self.shared.cfg.bot_user_id.clone();
        let st = self.st();
        let mut v: Vec<FakeMessage> = st
            .messages
            .iter()
            .filter(|m| m.channel == channel && !m.deleted && m.user.as_deref() == Some(&bot))
            .cloned()
            .collect();
        v.sort_by_key(|m| ts_key(&m.ts));
        v
    }

    /// Waits until `pred` holds for the visible messages of a thread.
    pub async fn wait_thread(
        &self,
        channel: &str,
        thread_ts: &str,
        timeout: Duration,
        pred: impl Fn(&[FakeMessage]) -> bool,
    ) -> bool {
        wait_until(timeout, || pred(&self.thread_messages(channel, thread_ts))).await
    }

    /// Ephemeral messages posted with `chat.postEphemeral`.
    pub fn ephemerals(&self) -> Vec<FakeEphemeral> {
        self.st().ephemerals.clone()
    }

    /// Every status set with `assistant.threads.setStatus` in a thread, oldest first (`""`
    /// clears it).
    pub fn assistant_statuses(&self, channel: &str, thread_ts: &str) -> Vec<String> {
        self.st()
            .statuses
            .get(&(channel.to_string(), thread_ts.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// The last `assistant.threads.setSuggestedPrompts` arguments for a thread (`prompts`,
    /// optional `title`).
    pub fn suggested_prompts(&self, channel: &str, thread_ts: &str) -> Option<Value> {
        self.st()
            .prompts
            .get(&(channel.to_string(), thread_ts.to_string()))
            .cloned()
    }

    /// The title set with `assistant.threads.setTitle`.
    pub fn thread_title(&self, channel: &str, thread_ts: &str) -> Option<String> {
        self.st()
            .titles
            .get(&(channel.to_string(), thread_ts.to_string()))
            .cloned()
    }

    /// Stores a thread as if people had written it: the first `(user, text)` is the parent,
    /// the rest are replies. A user equal to the bot's user id makes a bot message. Returns
    /// each message's `ts` (the first is the `thread_ts`).
    pub fn seed_thread(&self, channel: &str, messages: &[(&str, &str)]) -> Vec<String> {
        let mut st = self.st();
        let mut out = Vec::new();
        let mut parent: Option<String> = None;
        for (user, text) in messages {
            let ts = next_ts(&mut st);
            let mut m = FakeMessage::new(channel, &ts);
            m.thread_ts = Some(parent.clone().unwrap_or_else(|| ts.clone()));
            m.user = Some(user.to_string());
            if *user == self.shared.cfg.bot_user_id {
                m.bot_id = Some(self.shared.cfg.bot_id.clone());
                m.app_id = Some(self.shared.cfg.app_id.clone());
            } else {
                m.blocks = vec![rich_text_block(text)];
            }
            m.text = text.to_string();
            m.history.push(m.text.clone());
            st.messages.push(m);
            parent.get_or_insert(ts.clone());
            out.push(ts);
        }
        out
    }

    /// Stores a message exactly as given (files, subtypes, …).
    pub fn insert_message(&self, message: FakeMessage) {
        self.st().messages.push(message);
    }

    /// Makes `users.info` know a user whose display name is their `name`.
    pub fn add_user(&self, id: &str, name: &str, real_name: &str, is_bot: bool) {
        let bot = is_bot.then_some(("B0OTHER", "A0OTHER"));
        let u = user_object(&Person {
            team: &self.shared.cfg.team_id,
            id,
            name,
            display_name: name,
            real_name,
            bot,
        });
        self.st().users.insert(id.to_string(), u);
    }

    /// Makes `users.info` know a person: `display_name` as they chose it (`""` when they
    /// chose none, as Slack sends it) and their `real_name`.
    pub fn add_person(&self, id: &str, display_name: &str, real_name: &str) {
        let name = real_name
            .split_whitespace()
            .next()
            .unwrap_or(id)
            .to_lowercase();
        let u = user_object(&Person {
            team: &self.shared.cfg.team_id,
            id,
            name: &name,
            display_name,
            real_name,
            bot: None,
        });
        self.st().users.insert(id.to_string(), u);
    }

    // ---- Files ----

    /// Hosts a private file and returns its `url_private_download`
    /// (`/files-pri/T1-F1/download/name`). Only the bot token gets the bytes.
    pub fn host_file(&self, name: &str, bytes: &[u8], mime: &str) -> String {
        self.host(name, bytes, mime).2
    }

    fn host(&self, name: &str, bytes: &[u8], mime: &str) -> (String, String, String) {
        let mut st = self.st();
        st.seq_file += 1;
        let id = format!("F{:010}", st.seq_file);
        let dir = format!("/files-pri/{}-{}", self.shared.cfg.team_id, id);
        let enc = url_encode(name);
        let private = format!("{dir}/{enc}");
        let download = format!("{dir}/download/{enc}");
        st.files
            .insert(private.clone(), (bytes.to_vec(), mime.to_string()));
        st.files
            .insert(download.clone(), (bytes.to_vec(), mime.to_string()));
        (
            id,
            format!("{}{private}", self.shared.base),
            format!("{}{download}", self.shared.base),
        )
    }

    /// Hosts a private file and returns Slack's file object for it (`id`, `name`, `mimetype`,
    /// `filetype`, `size`, `url_private`, `url_private_download`, …), shared by `user`.
    pub fn file_object(&self, name: &str, bytes: &[u8], mime: &str, user: &str) -> Value {
        let (id, private, download) = self.host(name, bytes, mime);
        let filetype = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("binary");
        let secs = BASE_TS_SECS;
        json!({
            "id": id,
            "created": secs,
            "timestamp": secs,
            "name": name,
            "title": name,
            "mimetype": mime,
            "filetype": filetype,
            "pretty_type": filetype.to_uppercase(),
            "user": user,
            "user_team": self.shared.cfg.team_id,
            "editable": false,
            "size": bytes.len(),
            "mode": "hosted",
            "is_external": false,
            "external_type": "",
            "is_public": true,
            "public_url_shared": false,
            "display_as_bot": false,
            "username": "",
            "url_private": private,
            "url_private_download": download,
            "permalink": format!("https://{}.slack.com/files/{user}/{id}/{name}", self.shared.cfg.team_domain),
            "permalink_public": format!("https://slack-files.com/{}-{id}-0123456789", self.shared.cfg.team_id),
            "has_rich_preview": false,
            "file_access": "visible"
        })
    }

    /// A private file URL that, for the right token, answers `302 Found` to `target` (to
    /// check that a client does not carry the token across a redirect).
    pub fn host_redirect(&self, name: &str, target: &str) -> String {
        let mut st = self.st();
        st.seq_file += 1;
        let path = format!(
            "/files-pri/{}-F{:010}/download/{}",
            self.shared.cfg.team_id,
            st.seq_file,
            url_encode(name)
        );
        st.redirects.insert(path.clone(), target.to_string());
        format!("{}{path}", self.shared.base)
    }

    /// Every request to a file URL, with its `Authorization` header.
    pub fn file_requests(&self) -> Vec<HttpRecord> {
        self.st().file_requests.clone()
    }

    /// The bot's final visible text in a thread that contains `contains`, waiting (up to 30 s)
    /// until one is there and its stream has stopped; panics with the thread's texts if none.
    pub async fn answer_in(&self, channel: &str, thread: &str, contains: &str) -> String {
        let ok = self
            .wait_thread(channel, thread, Duration::from_secs(30), |msgs| {
                msgs.iter().any(|m| {
                    m.bot_id.is_some() && !m.streaming && m.visible_text().contains(contains)
                })
            })
            .await;
        let texts: Vec<String> = self
            .thread_messages(channel, thread)
            .iter()
            .map(|m| m.visible_text())
            .collect();
        assert!(
            ok,
            "no answer containing {contains:?} in the thread: {texts:?}"
        );
        texts
            .into_iter()
            .rev()
            .find(|t| t.contains(contains))
            .unwrap()
    }

    /// Every POST to a slash command's `response_url`.
    pub fn response_url_posts(&self) -> Vec<HttpRecord> {
        self.st().response_url_posts.clone()
    }

    // ---- Socket Mode ----

    /// Socket Mode connections opened so far.
    pub fn connections_opened(&self) -> usize {
        self.st().opened
    }

    /// Socket Mode connections open now.
    pub fn open_connections(&self) -> usize {
        self.st().conns.len()
    }

    /// Waits until at least `n` connections are open.
    pub async fn wait_connections(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.open_connections() >= n).await
    }

    /// Wraps an Events API event (the inner `event` object) in an `event_callback` and a
    /// Socket Mode `events_api` envelope and sends it to every open connection (or, with
    /// none open, to the next one that opens). Message events are also stored, since in
    /// Slack the message now exists. Returns the envelope id.
    pub fn push_event(&self, event: Value) -> String {
        self.push_event_to(None, event)
    }

    /// Like [`Self::push_event`], to one open connection (0 = the oldest still open).
    pub fn push_event_to(&self, connection: Option<usize>, event: Value) -> String {
        let callback = self.event_callback(event).0;
        self.push_callback_to(connection, callback)
    }

    /// Sends an already built `event_callback` (e.g. to repeat an `event_id`).
    pub fn push_callback(&self, callback: Value) -> String {
        self.push_callback_to(None, callback)
    }

    fn push_callback_to(&self, connection: Option<usize>, callback: Value) -> String {
        self.store_user_message(&callback["event"]);
        self.shared.push(
            "events_api",
            callback,
            false,
            true,
            connection,
            (0, String::new()),
        )
    }

    /// Sends a `slash_commands` envelope (`accepts_response_payload: true`) carrying the form
    /// fields of a slash command (see [`Self::slash_command`]). Returns the envelope id.
    pub fn push_slash_command(&self, fields: Value) -> String {
        self.shared.push(
            "slash_commands",
            fields,
            true,
            false,
            None,
            (0, String::new()),
        )
    }

    /// Sends an `interactive` envelope (e.g. a `block_actions` payload). Returns the envelope id.
    pub fn push_interactive(&self, payload: Value) -> String {
        let accepts = payload["type"] != "block_actions";
        self.shared.push(
            "interactive",
            payload,
            accepts,
            false,
            None,
            (0, String::new()),
        )
    }

    /// Delivers an envelope's payload again, as Slack does when an ack is late: a new
    /// envelope with `retry_attempt` one higher and `retry_reason: "timeout"`. Returns the new
    /// envelope id.
    pub fn redeliver(&self, envelope_id: &str) -> String {
        let frame = self
            .st()
            .envelopes
            .get(envelope_id)
            .map(|p| p.frame.clone())
            .expect("unknown envelope id");
        let attempt = frame["retry_attempt"].as_u64().unwrap_or(0) + 1;
        let kind = frame["type"].as_str().unwrap_or("events_api").to_string();
        self.shared.push(
            &kind,
            frame["payload"].clone(),
            frame["accepts_response_payload"] == true,
            kind == "events_api",
            None,
            (attempt, "timeout".into()),
        )
    }

    /// Every ack received, in arrival order.
    pub fn acks(&self) -> Vec<Ack> {
        self.st().acks.clone()
    }

    /// The first ack of an envelope.
    pub fn ack_of(&self, envelope_id: &str) -> Option<Ack> {
        self.st()
            .acks
            .iter()
            .find(|a| a.envelope_id == envelope_id)
            .cloned()
    }

    /// Frames the app sent that were not acks (should stay empty).
    pub fn unexpected_frames(&self) -> Vec<String> {
        self.st().unexpected_frames.clone()
    }

    /// Waits for the envelope's first ack and returns the time from push to ack.
    pub async fn wait_ack(&self, envelope_id: &str, timeout: Duration) -> Option<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let st = self.st();
                if let Some(a) = st.acks.iter().find(|a| a.envelope_id == envelope_id) {
                    let pushed = st.envelopes.get(envelope_id).map(|p| p.at)?;
                    return Some(a.at.saturating_duration_since(pushed));
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends Slack's `disconnect` message with `reason` (`refresh_requested`, `warning`,
    /// `link_disabled`) to every open connection, then closes each after the configured grace.
    pub fn disconnect_all(&self, reason: &str) {
        let conns: Vec<Conn> = std::mem::take(&mut self.st().conns);
        for c in conns {
            let _ = c.tx.send(Out::Disconnect(reason.to_string()));
        }
    }

    /// Closes every socket abruptly: no `disconnect`, no close frame.
    pub fn drop_all(&self) {
        let conns: Vec<Conn> = std::mem::take(&mut self.st().conns);
        for c in conns {
            let _ = c.tx.send(Out::Drop);
        }
    }

    // ---- Payload builders ----

    /// Wraps an event in Slack's `event_callback`; returns it and its `event_id`.
    pub fn event_callback(&self, event: Value) -> (Value, String) {
        let cfg = &self.shared.cfg;
        let n = {
            let mut st = self.st();
            st.seq_event += 1;
            st.seq_event
        };
        let event_id = format!("Ev{:08}AB", n);
        let event_time = event["event_ts"]
            .as_str()
            .and_then(|t| t.split('.').next())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(BASE_TS_SECS + n);
        let cb = json!({
            "token": "verificationtoken",
            "team_id": cfg.team_id,
            "context_team_id": cfg.team_id,
            "context_enterprise_id": null,
            "api_app_id": cfg.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": event_time,
            "authorizations": [{
                "enterprise_id": null,
                "team_id": cfg.team_id,
                "user_id": cfg.bot_user_id,
                "is_bot": true,
                "is_enterprise_install": false
            }],
            "is_ext_shared_channel": false,
            "event_context": format!("4-eyJldCI6Im1lc3NhZ2UiLCJ0aWQiOiJ{n}In0")
        });
        (cb, event_id)
    }

    fn user_message(&self, channel: &str, user: &str, text: &str, thread: Option<&str>) -> Value {
        let ts = self.next_ts();
        let mut e = json!({
            "user": user,
            "type": "message",
            "ts": ts,
            "client_msg_id": format!("{:08x}-aaaa-4bbb-8ccc-{:012x}", ts_key(&ts).1, ts_key(&ts).0),
            "text": text,
            "team": self.shared.cfg.team_id,
            "blocks": [rich_text_block(text)],
            "channel": channel,
            "event_ts": ts,
        });
        if let Some(t) = thread {
            e["thread_ts"] = json!(t);
            e["parent_user_id"] = json!(self.parent_user(channel, t));
        }
        e
    }

    fn parent_user(&self, channel: &str, thread_ts: &str) -> Value {
        self.find_message(channel, thread_ts)
            .and_then(|m| m.user)
            .map(Value::from)
            .unwrap_or(Value::Null)
    }

    /// An `app_mention`: `text` becomes `<@BOT> text`; in `thread_ts` when given.
    pub fn app_mention(
        &self,
        channel: &str,
        user: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> Value {
        let full = format!("<@{}> {text}", self.shared.cfg.bot_user_id);
        let mut e = self.user_message(channel, user, &full, thread_ts);
        e["type"] = json!("app_mention");
        e
    }

    /// A plain user `message`, with `channel_type` from the channel id (`C`: `channel`,
    /// `G`: `group`, `D`: `im`).
    pub fn message(&self, channel: &str, user: &str, text: &str, thread_ts: Option<&str>) -> Value {
        let mut e = self.user_message(channel, user, text, thread_ts);
        e["channel_type"] = json!(channel_type(channel));
        e
    }

    /// The `message` twin of an `app_mention` (same `ts`, `text` and thread), as delivered to
    /// an app subscribed to `message.channels`.
    pub fn message_twin(&self, app_mention: &Value) -> Value {
        let mut e = app_mention.clone();
        e["type"] = json!("message");
        e["channel_type"] = json!(channel_type(e["channel"].as_str().unwrap_or("C")));
        e
    }

    /// A `message` with `subtype: "file_share"` and `files` (see [`Self::file_object`]).
    pub fn file_share(
        &self,
        channel: &str,
        user: &str,
        text: &str,
        files: Vec<Value>,
        thread_ts: Option<&str>,
    ) -> Value {
        let mut e = self.message(channel, user, text, thread_ts);
        e["subtype"] = json!("file_share");
        e["files"] = json!(files);
        e["upload"] = json!(false);
        e["display_as_bot"] = json!(false);
        e
    }

    /// The same event with `files` attached (e.g. an `app_mention` with files).
    pub fn with_files(mut event: Value, files: Vec<Value>) -> Value {
        event["files"] = json!(files);
        event["upload"] = json!(false);
        event
    }

    /// The bot's own message as Slack echoes it: `user` is the bot user, with `bot_id`,
    /// `app_id` and `bot_profile`, no subtype.
    pub fn own_message(&self, channel: &str, text: &str, thread_ts: Option<&str>) -> Value {
        let cfg = &self.shared.cfg;
        let ts = self.next_ts();
        own_message_event(cfg, channel, &ts, text, &[], thread_ts)
    }

    /// Another bot's message with `subtype: "bot_message"`.
    pub fn bot_message(
        &self,
        channel: &str,
        bot_id: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> Value {
        let ts = self.next_ts();
        let mut e = json!({
            "type": "message",
            "subtype": "bot_message",
            "text": text,
            "ts": ts,
            "username": "otherbot",
            "bot_id": bot_id,
            "channel": channel,
            "event_ts": ts,
            "channel_type": channel_type(channel),
        });
        if let Some(t) = thread_ts {
            e["thread_ts"] = json!(t);
        }
        e
    }

    /// A `message_changed` event: `ts` was edited from `old_text` to `new_text` by `user`.
    pub fn message_changed(
        &self,
        channel: &str,
        ts: &str,
        user: &str,
        old_text: &str,
        new_text: &str,
    ) -> Value {
        let event_ts = self.next_ts();
        json!({
            "type": "message",
            "subtype": "message_changed",
            "message": {
                "type": "message", "user": user, "text": new_text, "ts": ts,
                "edited": {"user": user, "ts": event_ts},
                "blocks": [rich_text_block(new_text)]
            },
            "previous_message": {
                "type": "message", "user": user, "text": old_text, "ts": ts,
                "blocks": [rich_text_block(old_text)]
            },
            "channel": channel,
            "hidden": true,
            "ts": event_ts,
            "event_ts": event_ts,
            "channel_type": channel_type(channel),
        })
    }

    fn assistant_event(
        &self,
        kind: &str,
        user: &str,
        dm_channel: &str,
        thread_ts: &str,
        context_channel: Option<&str>,
    ) -> Value {
        let mut context = json!({"team_id": self.shared.cfg.team_id, "enterprise_id": null});
        if let Some(c) = context_channel {
            context["channel_id"] = json!(c);
        }
        json!({
            "type": kind,
            "assistant_thread": {
                "user_id": user,
                "context": context,
                "channel_id": dm_channel,
                "thread_ts": thread_ts
            },
            "event_ts": self.next_ts()
        })
    }

    /// `assistant_thread_started`: `user` opened the split view; the thread lives in the
    /// app's DM `dm_channel` at `thread_ts`; `context_channel` is what they were viewing.
    pub fn assistant_thread_started(
        &self,
        user: &str,
        dm_channel: &str,
        thread_ts: &str,
        context_channel: Option<&str>,
    ) -> Value {
        self.assistant_event(
            "assistant_thread_started",
            user,
            dm_channel,
            thread_ts,
            context_channel,
        )
    }

    /// `assistant_thread_context_changed`: the user moved to `context_channel`.
    pub fn assistant_thread_context_changed(
        &self,
        user: &str,
        dm_channel: &str,
        thread_ts: &str,
        context_channel: Option<&str>,
    ) -> Value {
        self.assistant_event(
            "assistant_thread_context_changed",
            user,
            dm_channel,
            thread_ts,
            context_channel,
        )
    }

    /// A `block_actions` payload for `actions` clicked by `user` on the stored message.
    pub fn block_actions(
        &self,
        channel: &str,
        message_ts: &str,
        user: &str,
        actions: Vec<Value>,
    ) -> Value {
        let cfg = &self.shared.cfg;
        let message = self
            .find_message(channel, message_ts)
            .map(|m| m.to_json())
            .unwrap_or_else(|| json!({"type": "message", "ts": message_ts, "text": ""}));
        let n = self.next_ts();
        json!({
            "type": "block_actions",
            "user": {"id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": cfg.team_id},
            "api_app_id": cfg.app_id,
            "token": "verificationtoken",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": false,
                "thread_ts": message["thread_ts"]
            },
            "trigger_id": format!("{}.{}.0123456789abcdef", n.replace('.', ""), cfg.team_id),
            "team": {"id": cfg.team_id, "domain": cfg.team_domain},
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": {"id": channel, "name": channel.to_lowercase()},
            "message": message,
            "state": {"values": {}},
            "response_url": format!("{}/actions/{}/{}/secret", self.shared.base, cfg.team_id, n.replace('.', "")),
            "actions": actions
        })
    }

    /// `user` clicks 👍 (`positive`) or 👎 on the stored message's `feedback_buttons`: the
    /// action carries the element's `action_id`, its block's `block_id` and the chosen
    /// button's `value` and `text`, as Slack sends them. `None` when the message has no
    /// feedback buttons.
    pub fn feedback_click(
        &self,
        channel: &str,
        message_ts: &str,
        user: &str,
        positive: bool,
    ) -> Option<Value> {
        let msg = self.find_message(channel, message_ts)?;
        let (block_id, el) = msg.feedback_buttons().into_iter().next()?;
        let button = &el[if positive {
            "positive_button"
        } else {
            "negative_button"
        }];
        let action = json!({
            "type": "feedback_buttons",
            "action_id": el["action_id"],
            "block_id": block_id,
            "text": button["text"],
            "value": button["value"],
            "action_ts": self.next_ts()
        });
        Some(self.block_actions(channel, message_ts, user, vec![action]))
    }

    /// The form fields of a slash command as Socket Mode delivers them (all strings), with a
    /// `response_url` on this fake.
    pub fn slash_command(&self, channel: &str, user: &str, command: &str, text: &str) -> Value {
        let cfg = &self.shared.cfg;
        let n = self.next_ts().replace('.', "");
        json!({
            "token": "verificationtoken",
            "team_id": cfg.team_id,
            "team_domain": cfg.team_domain,
            "channel_id": channel,
            "channel_name": if channel.starts_with('D') { "directmessage".to_string() } else { channel.to_lowercase() },
            "user_id": user,
            "user_name": user.to_lowercase(),
            "command": command,
            "text": text,
            "api_app_id": cfg.app_id,
            "is_enterprise_install": "false",
            "response_url": format!("{}/commands/{}/{n}/secret{n}", self.shared.base, cfg.team_id),
            "trigger_id": format!("{n}.{}.0123456789abcdef", cfg.team_id)
        })
    }

    /// `/anchor status` from `user` in `channel`.
    pub fn anchor_status(&self, channel: &str, user: &str) -> Value {
        self.slash_command(channel, user, "/anchor", "status")
    }

    fn store_user_message(&self, event: &Value) {
        let kind = event["type"].as_str().unwrap_or("");
        let subtype = event["subtype"].as_str();
        let stored = kind == "app_mention"
            || (kind == "message"
                && matches!(
                    subtype,
                    None | Some("file_share") | Some("thread_broadcast")
                ));
        let (Some(channel), Some(ts)) = (event["channel"].as_str(), event["ts"].as_str()) else {
            return;
        };
        if !stored {
            return;
        }
        let mut st = self.st();
        if st
            .messages
            .iter()
            .any(|m| m.channel == channel && m.ts == ts)
        {
            return;
        }
        let mut m = FakeMessage::new(channel, ts);
        m.thread_ts = event["thread_ts"].as_str().map(str::to_string);
        m.user = event["user"].as_str().map(str::to_string);
        m.bot_id = event["bot_id"].as_str().map(str::to_string);
        m.subtype = subtype.map(str::to_string);
        m.text = event["text"].as_str().unwrap_or("").to_string();
        m.blocks = event["blocks"].as_array().cloned().unwrap_or_default();
        m.files = event["files"].as_array().cloned().unwrap_or_default();
        m.history.push(m.text.clone());
        st.messages.push(m);
    }
}

impl Shared {
    fn st(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap()
    }

    fn push(
        &self,
        kind: &str,
        payload: Value,
        accepts_response_payload: bool,
        with_retry: bool,
        connection: Option<usize>,
        retry: (u64, String),
    ) -> String {
        let mut st = self.st();
        st.seq_envelope += 1;
        let n = st.seq_envelope;
        let envelope_id = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            0x5f1d_0000u64 + n,
            n & 0xffff,
            n & 0xfff,
            (n * 7) & 0xfff,
            n * 104_729
        );
        let mut frame = json!({
            "envelope_id": envelope_id,
            "payload": payload,
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
        });
        if with_retry {
            frame["retry_attempt"] = json!(retry.0);
            frame["retry_reason"] = json!(retry.1);
        }
        let text = frame.to_string();
        st.envelopes.insert(
            envelope_id.clone(),
            Pushed {
                frame,
                at: Instant::now(),
            },
        );
        send_frame(&mut st, connection, text);
        envelope_id
    }
}

fn send_frame(st: &mut St, connection: Option<usize>, text: String) {
    match connection {
        Some(i) => match st.conns.get(i) {
            Some(c) => {
                let _ = c.tx.send(Out::Text(text));
            }
            None => st.pending.push(text),
        },
        None if st.conns.is_empty() => st.pending.push(text),
        None => {
            for c in &st.conns {
                let _ = c.tx.send(Out::Text(text.clone()));
            }
        }
    }
}

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

fn next_ts(st: &mut St) -> String {
    st.seq_ts += 1;
    let micros = st.seq_ts * 100;
    format!(
        "{}.{:06}",
        BASE_TS_SECS + micros / 1_000_000,
        micros % 1_000_000
    )
}

fn ts_key(ts: &str) -> (u64, u64) {
    let (s, f) = ts.split_once('.').unwrap_or((ts, "0"));
    (s.parse().unwrap_or(0), f.parse().unwrap_or(0))
}

fn channel_type(channel: &str) -> &'static str {
    match channel.chars().next() {
        Some('D') => "im",
        Some('G') => "group",
        _ => "channel",
    }
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

/// A `rich_text` block as Slack attaches to user messages: `<@U…>` becomes a `user` element.
fn rich_text_block(text: &str) -> Value {
    let mut elements = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        let Some(end) = rest[start..].find('>') else {
            break;
        };
        if start > 0 {
            elements.push(json!({"type": "text", "text": &rest[..start]}));
        }
        elements.push(json!({"type": "user", "user_id": &rest[start + 2..start + end]}));
        rest = &rest[start + end + 1..];
    }
    if !rest.is_empty() {
        elements.push(json!({"type": "text", "text": rest}));
    }
    json!({
        "type": "rich_text",
        "block_id": format!("b{:04x}", text.len() % 0xffff),
        "elements": [{"type": "rich_text_section", "elements": elements}]
    })
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(_) => v["text"].as_str().map(str::to_string),
        _ => None,
    }
}

fn rich_text_of(v: &Value, out: &mut String) {
    match v["type"].as_str() {
        Some("text") => out.push_str(v["text"].as_str().unwrap_or("")),
        Some("user") => out.push_str(&format!("<@{}>", v["user_id"].as_str().unwrap_or(""))),
        Some("link") => out.push_str(v["text"].as_str().or(v["url"].as_str()).unwrap_or_default()),
        Some("emoji") => out.push_str(&format!(":{}:", v["name"].as_str().unwrap_or(""))),
        _ => {
            if let Some(els) = v["elements"].as_array() {
                for e in els {
                    rich_text_of(e, out);
                }
            }
        }
    }
}

/// The readable text of blocks, one block per line (buttons and dividers contribute nothing).
fn blocks_text(blocks: &[Value]) -> String {
    let mut lines = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("section") => {
                if let Some(t) = text_of(&b["text"]) {
                    lines.push(t);
                }
                for f in b["fields"].as_array().into_iter().flatten() {
                    lines.extend(text_of(f));
                }
            }
            Some("markdown") => lines.extend(b["text"].as_str().map(str::to_string)),
            Some("header") => lines.extend(text_of(&b["text"])),
            Some("context") => {
                let parts: Vec<String> = b["elements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(text_of)
                    .collect();
                if !parts.is_empty() {
                    lines.push(parts.join(" "));
                }
            }
            Some("rich_text") => {
                let mut s = String::new();
                rich_text_of(b, &mut s);
                lines.push(s);
            }
            _ => {}
        }
    }
    lines.join("\n")
}

fn own_message_event(
    cfg: &FakeSlackConfig,
    channel: &str,
    ts: &str,
    text: &str,
    blocks: &[Value],
    thread_ts: Option<&str>,
) -> Value {
    let mut e = json!({
        "type": "message",
        "user": cfg.bot_user_id,
        "bot_id": cfg.bot_id,
        "app_id": cfg.app_id,
        "text": text,
        "ts": ts,
        "team": cfg.team_id,
        "bot_profile": {
            "id": cfg.bot_id,
            "deleted": false,
            "name": cfg.bot_user_name,
            "updated": BASE_TS_SECS,
            "app_id": cfg.app_id,
            "icons": {
                "image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png",
                "image_48": "https://a.slack-edge.com/80588/img/plugins/app/bot_48.png",
                "image_72": "https://a.slack-edge.com/80588/img/plugins/app/service_72.png"
            },
            "team_id": cfg.team_id
        },
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type(channel),
    });
    if !blocks.is_empty() {
        e["blocks"] = json!(blocks);
    }
    if let Some(t) = thread_ts {
        e["thread_ts"] = json!(t);
        e["parent_user_id"] = Value::Null;
    }
    e
}

fn thread_of(st: &St, channel: &str, thread_ts: &str) -> Vec<FakeMessage> {
    let mut v: Vec<FakeMessage> = st
        .messages
        .iter()
        .filter(|m| m.channel == channel && !m.deleted)
        .filter(|m| m.ts == thread_ts || m.thread_ts.as_deref() == Some(thread_ts))
        .cloned()
        .collect();
    v.sort_by_key(|m| ts_key(&m.ts));
    v
}

// ---- Web API ----

const METHODS: &[&str] = &[
    "auth.test",
    "apps.connections.open",
    "chat.postMessage",
    "chat.update",
    "chat.delete",
    "chat.postEphemeral",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "conversations.replies",
    "assistant.threads.setStatus",
    "assistant.threads.setSuggestedPrompts",
    "assistant.threads.setTitle",
    "reactions.add",
    "reactions.remove",
    "users.info",
];

const STREAM_METHODS: &[&str] = &["chat.startStream", "chat.appendStream", "chat.stopStream"];

/// Form fields whose value Slack parses as JSON.
const JSON_FIELDS: &[&str] = &[
    "blocks",
    "attachments",
    "chunks",
    "prompts",
    "metadata",
    "loading_messages",
];

fn err(code: &str) -> Value {
    json!({"ok": false, "error": code})
}

pub(crate) fn parse_args(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Value {
    let mut args = Map::new();
    let add_pairs = |q: &str, args: &mut Map<String, Value>| {
        if let Ok(u) = url::Url::parse(&format!("http://x/?{q}")) {
            for (k, v) in u.query_pairs() {
                let v = v.into_owned();
                let val = if JSON_FIELDS.contains(&k.as_ref()) {
                    serde_json::from_str(&v).unwrap_or(Value::String(v))
                } else {
                    Value::String(v)
                };
                args.insert(k.into_owned(), val);
            }
        }
    };
    if let Some(q) = uri.query() {
        add_pairs(q, &mut args);
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("application/json") {
        if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(body) {
            args.extend(o);
        }
    } else if ct.starts_with("application/x-www-form-urlencoded") {
        add_pairs(&String::from_utf8_lossy(body), &mut args);
    }
    Value::Object(args)
}

fn required_scope(method: &str, args: &Value) -> Option<&'static str> {
    Some(match method {
        "chat.postMessage" | "chat.update" | "chat.delete" | "chat.postEphemeral"
        | "chat.startStream" | "chat.appendStream" | "chat.stopStream" => "chat:write",
        "conversations.replies" => match args["channel"].as_str().and_then(|c| c.chars().next()) {
            Some('D') => "im:history",
            Some('G') => "groups:history",
            _ => "channels:history",
        },
        "assistant.threads.setStatus"
        | "assistant.threads.setSuggestedPrompts"
        | "assistant.threads.setTitle" => "assistant:write",
        "reactions.add" | "reactions.remove" => "reactions:write",
        "users.info" => "users:read",
        _ => return None,
    })
}

fn s<'a>(args: &'a Value, key: &str) -> Option<&'a str> {
    args[key].as_str().filter(|v| !v.is_empty())
}

fn channel_arg(args: &Value, key: &str) -> Result<String, Value> {
    match s(args, key) {
        Some(c)
            if c.len() > 1
                && matches!(c.chars().next(), Some('C' | 'G' | 'D'))
                && c.chars().all(|ch| ch.is_ascii_alphanumeric()) =>
        {
            Ok(c.to_string())
        }
        _ => Err(err("channel_not_found")),
    }
}

fn invalid_blocks(why: &str) -> Value {
    json!({"ok": false, "error": "invalid_blocks", "errors": [why],
           "response_metadata": {"messages": [format!("[ERROR] {why}")]}})
}

/// `Ok(None)` when the request has no `blocks`.
fn blocks_arg(args: &Value) -> Result<Option<Vec<Value>>, Value> {
    let blocks = match &args["blocks"] {
        Value::Null => return Ok(None),
        Value::Array(a) => a.clone(),
        Value::String(_) => return Err(err("invalid_blocks_format")),
        _ => return Err(err("invalid_blocks_format")),
    };
    validate_blocks(&blocks)?;
    Ok(Some(blocks))
}

fn validate_blocks(blocks: &[Value]) -> Result<(), Value> {
    if blocks.len() > MAX_BLOCKS {
        return Err(invalid_blocks(
            "must provide an array of no more than 50 items [json-pointer:/blocks]",
        ));
    }
    let mut markdown = 0usize;
    let mut ids = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let Some(kind) = b["type"].as_str() else {
            return Err(invalid_blocks(&format!(
                "missing required field: type [json-pointer:/blocks/{i}]"
            )));
        };
        if let Some(id) = b["block_id"].as_str() {
            if id.chars().count() > 255 || ids.contains(&id) {
                return Err(invalid_blocks(&format!(
                    "invalid block_id [json-pointer:/blocks/{i}/block_id]"
                )));
            }
            ids.push(id);
        }
        match kind {
            "markdown" => {
                let Some(t) = b["text"].as_str() else {
                    return Err(invalid_blocks(&format!(
                        "missing required field: text [json-pointer:/blocks/{i}]"
                    )));
                };
                markdown += t.chars().count();
                if markdown > MAX_MARKDOWN_CHARS {
                    return Err(invalid_blocks(&format!(
                        "must be less than 12000 characters [json-pointer:/blocks/{i}/text]"
                    )));
                }
            }
            "section" => {
                let len = b["text"]["text"]
                    .as_str()
                    .map(|t| t.chars().count())
                    .unwrap_or(0);
                if len > MAX_SECTION_CHARS {
                    return Err(invalid_blocks(&format!(
                        "must be less than 3001 characters [json-pointer:/blocks/{i}/text]"
                    )));
                }
            }
            "header" => {
                let len = b["text"]["text"]
                    .as_str()
                    .map(|t| t.chars().count())
                    .unwrap_or(0);
                if len > 150 {
                    return Err(invalid_blocks(&format!(
                        "must be less than 151 characters [json-pointer:/blocks/{i}/text]"
                    )));
                }
            }
            "context_actions" => {
                let els = b["elements"].as_array().cloned().unwrap_or_default();
                if els.is_empty() || els.len() > 5 {
                    return Err(invalid_blocks(&format!(
                        "must provide an array of 1 to 5 items [json-pointer:/blocks/{i}/elements]"
                    )));
                }
                for (j, e) in els.iter().enumerate() {
                    if e["type"] == "feedback_buttons" {
                        for side in ["positive_button", "negative_button"] {
                            let btn = &e[side];
                            if btn["text"]["type"] != "plain_text"
                                || btn["text"]["text"].as_str().is_none()
                                || btn["value"].as_str().is_none()
                            {
                                return Err(invalid_blocks(&format!(
                                    "missing required field: {side} [json-pointer:/blocks/{i}/elements/{j}]"
                                )));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Texts of `markdown_text` chunks; `Err(invalid_chunks)` on an unknown chunk type.
fn chunks_text(args: &Value) -> Result<String, Value> {
    let mut out = String::new();
    for c in args["chunks"].as_array().into_iter().flatten() {
        match c["type"].as_str() {
            Some("markdown_text") => out.push_str(c["text"].as_str().unwrap_or("")),
            Some("task_update" | "plan_update" | "blocks") => {}
            _ => return Err(err("invalid_chunks")),
        }
    }
    Ok(out)
}

fn too_long(text: &str, max: usize) -> bool {
    text.chars().count() > max
}

struct Outcome {
    body: Value,
    echo: Option<Value>,
}

impl Shared {
    fn call(&self, st: &mut St, method: &str, args: &Value, token: Option<&str>) -> Outcome {
        let mut echo = None;
        if let Some(error) = st.failures.remove(method) {
            return Outcome {
                body: err(&error),
                echo,
            };
        }
        let body = match self.dispatch(st, method, args, token, &mut echo) {
            Ok(v) => v,
            Err(e) => e,
        };
        Outcome { body, echo }
    }

    fn dispatch(
        &self,
        st: &mut St,
        method: &str,
        args: &Value,
        token: Option<&str>,
        echo: &mut Option<Value>,
    ) -> Result<Value, Value> {
        let cfg = &self.cfg;
        if !METHODS.contains(&method) || (STREAM_METHODS.contains(&method) && !st.streaming) {
            return Err(err("unknown_method"));
        }
        let Some(token) = token else {
            return Err(err("not_authed"));
        };
        if token == cfg.app_token {
            if method != "apps.connections.open" && method != "auth.test" {
                return Err(err("not_allowed_token_type"));
            }
        } else if token == cfg.bot_token {
            if method == "apps.connections.open" {
                return Err(err("not_allowed_token_type"));
            }
        } else {
            return Err(err("invalid_auth"));
        }
        if let Some(scope) = required_scope(method, args) {
            if !cfg.scopes.iter().any(|s| s == scope) {
                return Err(
                    json!({"ok": false, "error": "missing_scope", "needed": scope,
                                  "provided": cfg.scopes.join(",")}),
                );
            }
        }
        match method {
            "auth.test" => Ok(json!({
                "ok": true,
                "url": format!("https://{}.slack.com/", cfg.team_domain),
                "team": cfg.team_name,
                "user": cfg.bot_user_name,
                "team_id": cfg.team_id,
                "user_id": cfg.bot_user_id,
                "bot_id": cfg.bot_id,
                "is_enterprise_install": false
            })),
            "apps.connections.open" => {
                st.seq_ticket += 1;
                let ticket = format!(
                    "{:08x}-7a3c-4e1b-9f00-{:012x}",
                    st.seq_ticket, st.seq_ticket
                );
                st.tickets.push(ticket.clone());
                let host = self.base.trim_start_matches("http://");
                Ok(json!({
                    "ok": true,
                    "url": format!("ws://{host}/link/?ticket={ticket}&app_id={}", cfg.app_id)
                }))
            }
            "chat.postMessage" => {
                let channel = channel_arg(args, "channel")?;
                let blocks = blocks_arg(args)?;
                let markdown = s(args, "markdown_text");
                let text = s(args, "text");
                if text.is_none()
                    && markdown.is_none()
                    && blocks.as_ref().is_none_or(|b| b.is_empty())
                    && args["attachments"].as_array().is_none_or(|a| a.is_empty())
                {
                    return Err(err("no_text"));
                }
                if text.is_some_and(|t| too_long(t, MAX_TEXT_CHARS))
                    || markdown.is_some_and(|t| too_long(t, MAX_MARKDOWN_CHARS))
                {
                    return Err(err("msg_too_long"));
                }
                let ts = next_ts(st);
                let mut m = self.bot_message(&channel, &ts, s(args, "thread_ts"));
                m.text = markdown.or(text).unwrap_or("").to_string();
                m.blocks = blocks.unwrap_or_default();
                m.history.push(m.text.clone());
                let json = m.to_json();
                if cfg.echo_bot_messages {
                    *echo = Some(own_message_event(
                        cfg,
                        &channel,
                        &ts,
                        &m.text,
                        &m.blocks,
                        m.thread_ts.as_deref(),
                    ));
                }
                st.messages.push(m);
                Ok(json!({"ok": true, "channel": channel, "ts": ts, "message": json}))
            }
            "chat.update" => {
                let channel = channel_arg(args, "channel")?;
                let ts = s(args, "ts").ok_or_else(|| err("message_not_found"))?;
                let blocks = blocks_arg(args)?;
                let markdown = s(args, "markdown_text");
                let text = s(args, "text");
                if text.is_some_and(|t| too_long(t, MAX_TEXT_CHARS))
                    || markdown.is_some_and(|t| too_long(t, MAX_MARKDOWN_CHARS))
                {
                    return Err(err("msg_too_long"));
                }
                if text.is_none() && markdown.is_none() && blocks.is_none() {
                    return Err(err("no_text"));
                }
                let m = self.bot_owned(st, &channel, ts, "cant_update_message")?;
                if let Some(t) = markdown.or(text) {
                    m.text = t.to_string();
                }
                // Slack keeps the previous blocks when `blocks` is omitted; `[]` removes them.
                if let Some(b) = blocks {
                    m.blocks = b;
                }
                m.edits += 1;
                m.history.push(m.text.clone());
                Ok(
                    json!({"ok": true, "channel": channel, "ts": ts, "text": m.text,
                          "message": m.to_json()}),
                )
            }
            "chat.delete" => {
                let channel = channel_arg(args, "channel")?;
                let ts = s(args, "ts").ok_or_else(|| err("message_not_found"))?;
                let m = self.bot_owned(st, &channel, ts, "cant_delete_message")?;
                m.deleted = true;
                Ok(json!({"ok": true, "channel": channel, "ts": ts}))
            }
            "chat.postEphemeral" => {
                let channel = channel_arg(args, "channel")?;
                let user = s(args, "user").ok_or_else(|| err("user_not_in_channel"))?;
                let blocks = blocks_arg(args)?;
                let text = s(args, "text").or(s(args, "markdown_text"));
                if text.is_none() && blocks.as_ref().is_none_or(|b| b.is_empty()) {
                    return Err(err("no_text"));
                }
                if text.is_some_and(|t| too_long(t, MAX_TEXT_CHARS)) {
                    return Err(err("msg_too_long"));
                }
                let ts = next_ts(st);
                st.ephemerals.push(FakeEphemeral {
                    channel,
                    user: user.to_string(),
                    text: text.unwrap_or("").to_string(),
                    blocks: blocks.unwrap_or_default(),
                    thread_ts: s(args, "thread_ts").map(str::to_string),
                    ts: ts.clone(),
                });
                Ok(json!({"ok": true, "message_ts": ts}))
            }
            "chat.startStream" => {
                let channel = channel_arg(args, "channel")?;
                // A stream is always a thread reply: `thread_ts` is required.
                if s(args, "thread_ts").is_none() {
                    return Err(err("invalid_arguments"));
                }
                if !channel.starts_with('D')
                    && (s(args, "recipient_user_id").is_none()
                        || s(args, "recipient_team_id").is_none())
                {
                    return Err(err("invalid_arguments"));
                }
                let mut text = s(args, "markdown_text").unwrap_or("").to_string();
                if too_long(&text, MAX_MARKDOWN_CHARS) {
                    return Err(err("msg_too_long"));
                }
                text.push_str(&chunks_text(args)?);
                let ts = next_ts(st);
                let mut m = self.bot_message(&channel, &ts, s(args, "thread_ts"));
                m.text = text;
                m.streaming = true;
                m.streamed = true;
                m.history.push(m.text.clone());
                st.messages.push(m);
                Ok(json!({"ok": true, "channel": channel, "ts": ts}))
            }
            "chat.appendStream" | "chat.stopStream" => {
                let channel = channel_arg(args, "channel")?;
                let ts = s(args, "ts").ok_or_else(|| err("message_not_found"))?;
                let markdown = s(args, "markdown_text");
                if method == "chat.appendStream" && markdown.is_none() && args["chunks"].is_null() {
                    return Err(err("invalid_arguments"));
                }
                if markdown.is_some_and(|t| too_long(t, MAX_MARKDOWN_CHARS)) {
                    return Err(err("msg_too_long"));
                }
                let chunks = chunks_text(args)?;
                let blocks = if method == "chat.stopStream" {
                    blocks_arg(args)?
                } else {
                    None
                };
                let m = st
                    .messages
                    .iter_mut()
                    .find(|m| m.channel == channel && m.ts == ts && !m.deleted)
                    .ok_or_else(|| err("message_not_found"))?;
                if !m.streaming {
                    return Err(err("message_not_in_streaming_state"));
                }
                m.text.push_str(markdown.unwrap_or(""));
                m.text.push_str(&chunks);
                if method == "chat.stopStream" {
                    m.streaming = false;
                    if let Some(b) = blocks {
                        m.blocks.extend(b);
                    }
                }
                m.history.push(m.text.clone());
                if method == "chat.stopStream" {
                    Ok(json!({"ok": true, "channel": channel, "ts": ts, "message": m.to_json()}))
                } else {
                    Ok(json!({"ok": true, "channel": channel, "ts": ts}))
                }
            }
            "conversations.replies" => {
                let channel = channel_arg(args, "channel")?;
                let ts = s(args, "ts").ok_or_else(|| err("thread_not_found"))?;
                let thread = thread_of(st, &channel, ts);
                if thread.first().is_none_or(|m| m.ts != ts) {
                    return Err(err("thread_not_found"));
                }
                let inclusive =
                    matches!(s(args, "inclusive"), Some("true" | "1")) || args["inclusive"] == true;
                let oldest = s(args, "oldest").map(ts_key);
                let latest = s(args, "latest").map(ts_key);
                let in_range = |m: &FakeMessage| {
                    let k = ts_key(&m.ts);
                    let after = oldest.is_none_or(|o| if inclusive { k >= o } else { k > o });
                    let before = latest.is_none_or(|l| if inclusive { k <= l } else { k < l });
                    after && before
                };
                let replies: Vec<&FakeMessage> = thread[1..].iter().collect();
                let mut parent = thread[0].to_json();
                parent["reply_count"] = json!(replies.len());
                let mut users: Vec<String> =
                    replies.iter().filter_map(|m| m.user.clone()).collect();
                users.dedup();
                parent["reply_users_count"] = json!(users.len());
                parent["reply_users"] = json!(users);
                if let Some(last) = replies.last() {
                    parent["latest_reply"] = json!(last.ts);
                }
                // The parent always comes first, whatever the range.
                let mut all = vec![parent];
                all.extend(replies.into_iter().filter(|m| in_range(m)).map(|m| {
                    let mut j = m.to_json();
                    j["parent_user_id"] = json!(thread[0].user);
                    j
                }));
                let start = match s(args, "cursor") {
                    None => 0,
                    Some(c) => {
                        let decoded = base64::engine::general_purpose::STANDARD
                            .decode(c)
                            .ok()
                            .and_then(|b| String::from_utf8(b).ok())
                            .and_then(|s| s.strip_prefix("next_ts:").map(str::to_string))
                            .ok_or_else(|| err("invalid_cursor"))?;
                        all.iter()
                            .position(|m| m["ts"] == decoded.as_str())
                            .ok_or_else(|| err("invalid_cursor"))?
                    }
                };
                let limit = args["limit"]
                    .as_u64()
                    .or_else(|| s(args, "limit").and_then(|l| l.parse().ok()))
                    .unwrap_or(1000)
                    .clamp(1, 1000) as usize;
                let end = (start + limit).min(all.len());
                let page = all[start..end].to_vec();
                let has_more = end < all.len();
                let next = if has_more {
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("next_ts:{}", all[end]["ts"].as_str().unwrap_or("")))
                } else {
                    String::new()
                };
                Ok(json!({"ok": true, "messages": page, "has_more": has_more,
                          "response_metadata": {"next_cursor": next}}))
            }
            "assistant.threads.setStatus" => {
                let key = thread_key(args)?;
                let status = args["status"]
                    .as_str()
                    .ok_or_else(|| err("invalid_arguments"))?;
                st.statuses.entry(key).or_default().push(status.to_string());
                Ok(json!({"ok": true}))
            }
            "assistant.threads.setSuggestedPrompts" => {
                let key = thread_key(args)?;
                let prompts = args["prompts"]
                    .as_array()
                    .filter(|p| !p.is_empty() && p.len() <= 4)
                    .ok_or_else(|| err("invalid_arguments"))?;
                if prompts
                    .iter()
                    .any(|p| p["title"].as_str().is_none() || p["message"].as_str().is_none())
                {
                    return Err(err("invalid_arguments"));
                }
                st.prompts
                    .insert(key, json!({"prompts": prompts, "title": args["title"]}));
                Ok(json!({"ok": true}))
            }
            "assistant.threads.setTitle" => {
                let key = thread_key(args)?;
                let title = s(args, "title").ok_or_else(|| err("invalid_arguments"))?;
                st.titles.insert(key, title.to_string());
                Ok(json!({"ok": true}))
            }
            "reactions.add" | "reactions.remove" => {
                let channel = channel_arg(args, "channel")?;
                let ts = s(args, "timestamp").ok_or_else(|| err("no_item_specified"))?;
                let name = s(args, "name").ok_or_else(|| err("invalid_name"))?;
                let bot = cfg.bot_user_id.clone();
                let m = st
                    .messages
                    .iter_mut()
                    .find(|m| m.channel == channel && m.ts == ts && !m.deleted)
                    .ok_or_else(|| err("message_not_found"))?;
                let pos = m.reactions.iter().position(|(n, _)| n == name);
                if method == "reactions.add" {
                    match pos {
                        Some(i) if m.reactions[i].1.contains(&bot) => {
                            return Err(err("already_reacted"))
                        }
                        Some(i) => m.reactions[i].1.push(bot),
                        None => m.reactions.push((name.to_string(), vec![bot])),
                    }
                } else {
                    let i = pos
                        .filter(|&i| m.reactions[i].1.contains(&bot))
                        .ok_or_else(|| err("no_reaction"))?;
                    m.reactions[i].1.retain(|u| *u != bot);
                    if m.reactions[i].1.is_empty() {
                        m.reactions.remove(i);
                    }
                }
                Ok(json!({"ok": true}))
            }
            "users.info" => {
                let id = s(args, "user").ok_or_else(|| err("user_not_found"))?;
                if let Some(u) = st.users.get(id) {
                    return Ok(json!({"ok": true, "user": u}));
                }
                if id == cfg.bot_user_id {
                    let u = user_object(&Person {
                        team: &cfg.team_id,
                        id,
                        name: &cfg.bot_user_name,
                        display_name: "",
                        real_name: &cfg.bot_user_name,
                        bot: Some((&cfg.bot_id, &cfg.app_id)),
                    });
                    return Ok(json!({"ok": true, "user": u}));
                }
                // Anyone else in the workspace: named after their id.
                if id.len() > 1 && (id.starts_with('U') || id.starts_with('W')) {
                    let name = id.to_lowercase();
                    let real = format!("User {id}");
                    let u = user_object(&Person {
                        team: &cfg.team_id,
                        id,
                        name: &name,
                        display_name: &name,
                        real_name: &real,
                        bot: None,
                    });
                    return Ok(json!({"ok": true, "user": u}));
                }
                Err(err("user_not_found"))
            }
            _ => Err(err("unknown_method")),
        }
    }

    fn bot_message(&self, channel: &str, ts: &str, thread_ts: Option<&str>) -> FakeMessage {
        let mut m = FakeMessage::new(channel, ts);
        m.user = Some(self.cfg.bot_user_id.clone());
        m.bot_id = Some(self.cfg.bot_id.clone());
        m.app_id = Some(self.cfg.app_id.clone());
        m.thread_ts = thread_ts.map(str::to_string);
        m
    }

    fn bot_owned<'a>(
        &self,
        st: &'a mut St,
        channel: &str,
        ts: &str,
        not_own: &str,
    ) -> Result<&'a mut FakeMessage, Value> {
        let m = st
            .messages
            .iter_mut()
            .find(|m| m.channel == channel && m.ts == ts && !m.deleted)
            .ok_or_else(|| err("message_not_found"))?;
        if m.user.as_deref() != Some(self.cfg.bot_user_id.as_str()) {
            return Err(err(not_own));
        }
        Ok(m)
    }
}

fn thread_key(args: &Value) -> Result<(String, String), Value> {
    let channel = channel_arg(args, "channel_id")?;
    let ts = s(args, "thread_ts").ok_or_else(|| err("invalid_arguments"))?;
    Ok((channel, ts.to_string()))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

async fn api(
    State(shared): State<Arc<Shared>>,
    Path(method): Path<String>,
    http_method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // What Slack reads of the request, and every published rule it broke.
    let checked = crate::slack_spec::check(&method, &http_method, &uri, &headers, &body);
    for rule in checked.broken {
        shared
            .rules
            .record(rule, format!("{http_method} /api/{method}"));
    }
    let args = checked.args;
    let token = bearer(&headers).or_else(|| s(&args, "token").map(str::to_string));
    let accepted = required_scope(&method, &args).unwrap_or("");
    let at = Instant::now();
    let (status, retry_after, out) = {
        let mut st = shared.st();
        let forced = match st.rate_limits.get_mut(&method) {
            Some((n, secs)) if *n > 0 => {
                *n -= 1;
                Some(*secs)
            }
            _ => None,
        };
        let key = crate::slack_tiers::key_of(&method, &args);
        let limited = match st.limits.admit(&key, forced, shared.cfg.tiers, at) {
            crate::slack_tiers::Gate::Pass => None,
            crate::slack_tiers::Gate::Limited {
                retry_after,
                violation,
            } => {
                if let Some(rule) = violation {
                    shared
                        .rules
                        .record(rule, format!("{http_method} /api/{method}"));
                }
                Some(retry_after)
            }
        };
        let (status, retry_after, out) = match limited {
            Some(secs) => (
                429u16,
                Some(secs),
                Outcome {
                    body: err("ratelimited"),
                    echo: None,
                },
            ),
            None => (
                200,
                None,
                shared.call(&mut st, &method, &args, token.as_deref()),
            ),
        };
        st.calls.push(ApiCall {
            method: method.clone(),
            http_method: http_method.to_string(),
            content_type: headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            args,
            token: token.clone(),
            at,
            status,
            response: out.body.clone(),
        });
        (status, retry_after, out)
    };
    if let Some(event) = out.echo {
        let fake = FakeSlack {
            shared: shared.clone(),
            _check: None,
        };
        fake.push_event(event);
    }
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8");
    if let Some(secs) = retry_after {
        resp = resp.header(header::RETRY_AFTER, secs.to_string());
    }
    if token.as_deref() == Some(shared.cfg.bot_token.as_str()) {
        resp = resp
            .header("x-oauth-scopes", shared.cfg.scopes.join(","))
            .header("x-accepted-oauth-scopes", accepted);
    }
    resp.body(axum::body::Body::from(out.body.to_string()))
        .unwrap()
}

const SIGN_IN_PAGE: &str = "<!DOCTYPE html><html lang=\"en-US\"><head><meta charset=\"utf-8\">\
<title>Slack</title></head><body><div id=\"page\"><h1>Sign in to Anchor Test</h1>\
<form id=\"signin_form\" action=\"/\" method=\"post\"><input type=\"email\" name=\"email\">\
<input type=\"password\" name=\"password\"><button type=\"submit\">Sign in</button></form>\
</div></body></html>";

async fn file(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let record = HttpRecord::new(&method, &uri, &headers, &body);
    let authorized =
        record.authorization.as_deref() == Some(&format!("Bearer {}", shared.cfg.bot_token));
    let mut st = shared.st();
    st.file_requests.push(record);
    // Slack answers a missing or wrong token with its sign-in page and status 200.
    if !authorized {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            SIGN_IN_PAGE,
        )
            .into_response();
    }
    if let Some(target) = st.redirects.get(uri.path()) {
        return (StatusCode::FOUND, [(header::LOCATION, target.clone())]).into_response();
    }
    match st.files.get(uri.path()) {
        Some((bytes, mime)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, mime.clone()),
                (header::CONTENT_LENGTH, bytes.len().to_string()),
            ],
            bytes.clone(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!DOCTYPE html><html><body><h1>File not found</h1></body></html>",
        )
            .into_response(),
    }
}

async fn response_url(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let record = HttpRecord::new(&method, &uri, &headers, &body);
    shared.st().response_url_posts.push(record);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        "{\"ok\":true}",
    )
        .into_response()
}

// ---- Socket Mode ----

async fn link(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let known = q
        .get("ticket")
        .is_some_and(|t| shared.st().tickets.contains(t));
    if !known {
        return (StatusCode::UNAUTHORIZED, "invalid ticket").into_response();
    }
    ws.on_upgrade(move |socket| serve_socket(shared, socket))
}

async fn serve_socket(shared: Arc<Shared>, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (id, hello, pending) = {
        let mut st = shared.st();
        st.opened += 1;
        let id = st.opened;
        st.conns.push(Conn { id, tx });
        let hello = json!({
            "type": "hello",
            "num_connections": st.conns.len(),
            "debug_info": {"host": "applink-1", "build_number": 1,
                           "approximate_connection_time": 18060},
            "connection_info": {"app_id": shared.cfg.app_id}
        });
        (id, hello.to_string(), std::mem::take(&mut st.pending))
    };
    let mut alive = socket.send(Message::Text(hello.into())).await.is_ok();
    for frame in pending {
        alive = alive && socket.send(Message::Text(frame.into())).await.is_ok();
    }
    let mut close_at: Option<tokio::time::Instant> = None;
    let mut commands_open = true;
    while alive {
        let closing = async {
            match close_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = rx.recv(), if commands_open => match cmd {
                Some(Out::Text(t)) => alive = socket.send(Message::Text(t.into())).await.is_ok(),
                Some(Out::Disconnect(reason)) => {
                    let msg = json!({"type": "disconnect", "reason": reason,
                                     "debug_info": {"host": "applink-1"}});
                    alive = socket.send(Message::Text(msg.to_string().into())).await.is_ok();
                    close_at = Some(tokio::time::Instant::now() + shared.cfg.disconnect_grace);
                }
                // Dropping the socket ends the TCP connection without a close frame.
                Some(Out::Drop) => break,
                // `disconnect_all` drops the sender right after queueing `Disconnect`; the
                // socket stays up until the grace period ends.
                None if close_at.is_some() => commands_open = false,
                None => break,
            },
            _ = closing => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let mut st = shared.st();
                    match serde_json::from_str::<Value>(t.as_str()) {
                        Ok(v) if v["envelope_id"].is_string() => {
                            let ack = Ack {
                                envelope_id: v["envelope_id"].as_str().unwrap().to_string(),
                                payload: v.get("payload").cloned(),
                                at: Instant::now(),
                                connection: id,
                            };
                            st.acks.push(ack);
                        }
                        _ => st.unexpected_frames.push(t.to_string()),
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    shared.st().conns.retain(|c| c.id != id);
}

// ---- A foreign host ----

/// A second, unrelated HTTP server (a "foreign host") that answers every request with a
/// harmless document and records it with its headers.
pub struct ForeignHost {
    base: String,
    requests: Arc<Mutex<Vec<HttpRecord>>>,
}

impl ForeignHost {
    /// Starts it on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<HttpRecord>>> = Arc::default();
        let app = Router::new().fallback(foreign).with_state(requests.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            requests,
        }
    }

    /// A URL on this host.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<HttpRecord> {
        self.requests.lock().unwrap().clone()
    }

    /// True when some request carried an `Authorization` header or a `token` parameter.
    pub fn saw_credentials(&self) -> bool {
        self.requests().iter().any(|r| {
            r.authorization.is_some()
                || r.headers.iter().any(|(k, _)| k == "cookie")
                || r.path.contains("token=")
        })
    }
}

async fn foreign(
    State(requests): State<Arc<Mutex<Vec<HttpRecord>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    requests
        .lock()
        .unwrap()
        .push(HttpRecord::new(&method, &uri, &headers, &body));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "A document from a host that is not Slack.\n",
    )
        .into_response()
}
