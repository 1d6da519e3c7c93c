//! Outbound: [`SlackPlatform`], the platform contract's [`Platform`] for Slack.
//!
//! - Answers live in a `markdown` block (Slack shows only the blocks of a message that has
//!   them), with a short mrkdwn `text` as the notification fallback: `chat.postMessage`,
//!   `chat.update`, `chat.delete`.
//! - Native streaming: `chat.startStream`, `chat.appendStream`, `chat.stopStream`, to the
//!   asking user in their own team (from `users.info`). A workspace (or channel kind) that
//!   has no streaming is remembered and gets post plus update; any other streaming error makes
//!   only that answer post and update ([`crate::stream_errors`]).
//! - Answers are converted to what a `markdown` block renders ([`crate::block_markdown`]).
//! - Status: `assistant.threads.setStatus` in assistant threads, an `eyes` reaction elsewhere.
//! - Feedback buttons (a `context_actions` block) on the last message of a final answer, and
//!   the title of an assistant thread.
//! - Ephemeral answers through a slash command's `response_url`, else `chat.postEphemeral`.
//! - File downloads with the bot token, which goes only to `files.slack.com` or to the origin
//!   of `api_url`, never on a redirect.
//!
//! Every Web API call spends the shared rate budget first ([`crate::rate`]): none is sent into
//! a 429's hold, a stream without allowance falls back to post plus update, writes are spaced
//! by how many replies share the allowance ([`crate::pace`]), and taking the working reaction
//! off waits for its allowance in the background. The calls go through slack-morphism's
//! session; the responses are read leniently (only `ts`), so a message Slack echoes back with
//! block kinds slack-morphism does not model cannot turn a posted answer into an error.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anchorbot_platform::{
    AppendStream, Attachment, Author, FinalState, Limits, MessageRef, Platform, PlatformError,
    PriorMessage, ReplyTarget, Status,
};
use async_trait::async_trait;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use slack_morphism::errors::{SlackClientError, SlackRateLimitError};
use url::Url;

use crate::block_markdown;
use crate::client::Api;
use crate::markdown::{to_mrkdwn, APPEND_STREAM_MAX, MARKDOWN_BLOCK_MAX, MESSAGE_TEXT_MAX};
use crate::pace::{self, Writers};
use crate::rate::{self, Patience, DEFAULT_RETRY_AFTER};
use crate::stream_errors::{self, Reach};
use crate::target::{is_dm, SlackTarget};
use crate::SlackConfig;

/// At most one write per streamed message per this interval: `chat.update` is Tier 3
/// (about 50 a minute per workspace), shared by every answer in flight.
pub const MIN_EDIT_INTERVAL: Duration = Duration::from_secs(1);
/// The host Slack serves `url_private_download` from; the bot token may go there.
pub const FILE_HOST: &str = "files.slack.com";
/// The `action_id` of the feedback buttons, for the inbound side to recognise a click.
pub const FEEDBACK_ACTION_ID: &str = "anchorbot_feedback";
/// The feedback button values: thumbs up, thumbs down.
pub const FEEDBACK_POSITIVE: &str = "good";
/// See [`FEEDBACK_POSITIVE`].
pub const FEEDBACK_NEGATIVE: &str = "bad";

/// The status shown in assistant threads while the model works.
const THINKING: &str = "is thinking…";
/// The reaction that says "working on it" outside assistant threads.
const WORKING_REACTION: &str = "eyes";
/// Characters of the notification fallback `text`: a preview, not the answer.
const FALLBACK_CHARS: usize = 280;
/// Characters of an assistant thread's title.
const TITLE_CHARS: usize = 60;
/// Characters of a progress status; Slack shows one short line.
const STATUS_CHARS: usize = 150;
/// How many posted messages, titled threads and shown statuses are remembered. Old entries
/// are forgotten first; forgetting one only costs feedback buttons or a title.
const REMEMBERED: usize = 4096;
/// A whole file download, headers and body.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// A `response_url` post.
const RESPONSE_URL_TIMEOUT: Duration = Duration::from_secs(10);
/// A write the reply can put off (an append or edit while the answer streams, the first
/// post): past this wait it is not sent, and the reply writes again later with more text.
const WRITE: Patience = Patience::Wait(Duration::from_millis(250));
/// What follows the final text (the stop with the feedback buttons, their update): the answer
/// is readable already, so it waits for its allowance.
const AFTER_ANSWER: Patience = Patience::Wait(Duration::from_secs(60));
/// A status shown while the model works: cosmetic, never worth a wait.
const STATUS: Patience = Patience::Wait(Duration::from_secs(2));
/// Taking a status off when its allowance is spent: in the background, for as long as it
/// takes the allowance to come back.
const CLEAR_LATER: Patience = Patience::Wait(Duration::from_secs(300));
/// Any other call (an ephemeral note, a delete).
const OTHER: Patience = Patience::Wait(Duration::from_secs(10));

/// The HTTPS client for file downloads and `response_url` posts. hyper's client never
/// follows redirects, which is what the token needs.
pub(crate) type WebClient =
    hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Slack's outbound side: posts, edits, streams, statuses, feedback buttons and file
/// downloads. Cheap to clone; clones share their memory (streaming fallback per workspace,
/// the text of posted answers).
#[derive(Clone)]
pub struct SlackPlatform {
    /// Settings: the bot token for downloads, `api_url` for the token's allowed hosts.
    cfg: Arc<SlackConfig>,
    /// The Web API.
    api: Api,
    /// Memory shared by every reply.
    shared: Arc<Shared>,
    /// The download client, or why it could not be built (no TLS roots).
    web: Arc<Result<WebClient, String>>,
}

impl std::fmt::Debug for SlackPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackPlatform").finish_non_exhaustive()
    }
}

impl SlackPlatform {
    /// The platform for the workspace(s) `api` reaches with `cfg`'s bot token.
    pub fn new(cfg: SlackConfig, api: Api) -> Self {
        Self {
            cfg: Arc::new(cfg),
            api,
            shared: Arc::new(Shared::default()),
            web: Arc::new(web_client()),
        }
    }

    /// Records whether events are being received (for readiness).
    pub(crate) fn set_connected(&self, up: bool) {
        self.shared
            .connected
            .store(up, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether replies in workspace `team` still try native streaming.
    pub fn streams_in(&self, team: &str) -> bool {
        !self.shared.streaming_off(team)
    }

    /// Calls `method` with `body` (JSON), spending its allowance as `patience` allows, and
    /// maps the error.
    async fn call<R: for<'de> Deserialize<'de> + Send>(
        &self,
        method: &str,
        body: &Value,
        patience: Patience,
    ) -> Result<R, PlatformError> {
        call(&self.api, method, body, patience)
            .await
            .map_err(|e| map_error(&self.api, &e))
    }

    /// The team of the person a stream to `target` answers, which for a Slack Connect guest
    /// or an Enterprise Grid user is not the workspace the event came through. The event says
    /// so in `user_team`, but slack-morphism's event types do not keep that field (Socket
    /// Mode hands over only the typed event), so it comes from the person's `users.info`
    /// (`team_id`), the look-up that also names them ([`crate::users`]); without it, the
    /// workspace's id is the best guess left.
    async fn recipient_team(&self, target: &SlackTarget) -> String {
        let names = &self.api.names;
        match names.team_of(&self.api, &target.user).await {
            Some(team) => team,
            None => target.team.clone(),
        }
    }

    /// Shows or takes off a status with `method`. Taking it off when the allowance is spent
    /// goes on in the background (the answer is complete; the status may lag), and counts as
    /// done from now, so a second clear sends nothing.
    async fn set_status(
        &self,
        method: &'static str,
        body: Value,
        key: (String, String),
        show: bool,
        ignored: Option<&'static str>,
    ) {
        if !show && rate::available(&self.api, method, None) < 1.0 {
            self.shared.set_status_shown(key.clone(), false);
            let this = self.clone();
            tokio::spawn(async move {
                this.send_status(method, &body, key, show, ignored, CLEAR_LATER)
                    .await
            });
            return;
        }
        self.send_status(method, &body, key, show, ignored, STATUS)
            .await;
    }

    /// Sends a status call and records what shows. A failure is logged, never returned.
    async fn send_status(
        &self,
        method: &'static str,
        body: &Value,
        key: (String, String),
        show: bool,
        ignored: Option<&'static str>,
        patience: Patience,
    ) {
        match call::<Value>(&self.api, method, body, patience).await {
            Ok(_) => self.shared.set_status_shown(key, show),
            Err(e) if ignored.is_some() && api_code(&e) == ignored => {
                self.shared.set_status_shown(key, show)
            }
            Err(e) => {
                let e = map_error(&self.api, &e);
                tracing::debug!(error = %e, method, "status update failed");
            }
        }
    }

    /// Remembers what a streaming error says about streaming beyond this call.
    fn note_stream_error(&self, e: &SlackClientError, team: &str, channel: &str) {
        match stream_errors::reach(e) {
            Reach::Workspace => {
                tracing::info!(
                    error = api_code(e).unwrap_or("not found"),
                    "native streaming unavailable in this workspace; posting and updating"
                );
                self.shared.turn_streaming_off(team);
            }
            Reach::Channel => {
                tracing::info!(
                    error = api_code(e).unwrap_or("refused"),
                    "native streaming unavailable in this channel; posting and updating"
                );
                self.shared.turn_channel_streaming_off(channel);
            }
            Reach::Call => {}
        }
    }

    /// Ends the native stream of message `channel`/`ts` if it is still open, with `blocks`
    /// under the text. Only a rate limit is returned for a plain stop: any other failure
    /// leaves nothing to retry, and the message is then treated as a normal one.
    async fn stop_stream(
        &self,
        channel: &str,
        ts: &str,
        blocks: Option<Value>,
    ) -> Result<(), PlatformError> {
        let Some(team) = self.shared.open_stream_team(channel, ts) else {
            return Ok(());
        };
        let mut body = json!({ "channel": channel, "ts": ts });
        if let Some(blocks) = blocks {
            body["blocks"] = blocks;
        }
        let result = call::<Value>(&self.api, "chat.stopStream", &body, AFTER_ANSWER).await;
        match result {
            Ok(_) => {
                self.shared.stream_stopped(channel, ts);
                Ok(())
            }
            Err(e) => {
                let mapped = map_error(&self.api, &e);
                self.note_stream_error(&e, &team, channel);
                if matches!(mapped, PlatformError::RateLimited { .. }) {
                    return Err(mapped);
                }
                tracing::debug!(error = %mapped, "chat.stopStream failed");
                if body.get("blocks").is_some() {
                    return Err(mapped);
                }
                self.shared.stream_stopped(channel, ts);
                Ok(())
            }
        }
    }

    /// Puts the feedback buttons under the answer in message `m`.
    async fn add_feedback(&self, m: &MessageRef) -> Result<(), PlatformError> {
        if self.shared.open_stream_team(&m.channel, &m.id).is_some() {
            match self
                .stop_stream(&m.channel, &m.id, Some(json!([feedback_block()])))
                .await
            {
                Ok(()) => return Ok(()),
                Err(PlatformError::RateLimited { retry_after }) => {
                    return Err(PlatformError::RateLimited { retry_after })
                }
                // The stop with buttons was refused: stop plainly, then update.
                Err(_) => self.stop_stream(&m.channel, &m.id, None).await?,
            }
        }
        let Some(text) = self.shared.text_of(&m.channel, &m.id) else {
            tracing::debug!("no answer text remembered for the message; no feedback buttons");
            return Ok(());
        };
        let body = message_body(&m.channel, None, Some(&m.id), &text, true);
        self.call::<Written>("chat.update", &body, AFTER_ANSWER)
            .await?;
        Ok(())
    }

    /// Names an assistant thread after the start of its first answer, once.
    async fn set_title(&self, to: &ReplyTarget, first: &MessageRef) {
        let Some(thread) = to.thread.as_deref() else {
            return;
        };
        if !self.shared.mark_titled(&to.channel, thread) {
            return;
        }
        let Some(title) = self
            .shared
            .text_of(&first.channel, &first.id)
            .and_then(|t| title_of(&t))
        else {
            return;
        };
        let body = json!({ "channel_id": to.channel, "thread_ts": thread, "title": title });
        if let Err(e) = self
            .call::<Value>("assistant.threads.setTitle", &body, STATUS)
            .await
        {
            tracing::debug!(error = %e, "assistant.threads.setTitle failed");
        }
    }

    /// Posts an ephemeral answer through a slash command's `response_url`.
    async fn respond(&self, response_url: &str, text: &str) -> Result<(), PlatformError> {
        let url = Url::parse(response_url)
            .map_err(|_| PlatformError::Rejected("the response_url is not a URL".into()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(PlatformError::Rejected(
                "the response_url is not an HTTP address".into(),
            ));
        }
        let web = self.web_client()?;
        let body = json!({ "response_type": "ephemeral", "text": mrkdwn_text(text) });
        let request = Request::builder()
            .method(Method::POST)
            .uri(url.as_str())
            .header(CONTENT_TYPE, "application/json; charset=utf-8")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|_| PlatformError::Rejected("the response_url is not usable".into()))?;
        let response = tokio::time::timeout(RESPONSE_URL_TIMEOUT, web.request(request))
            .await
            .map_err(|_| PlatformError::Transport("the response_url did not answer".into()))?
            .map_err(|e| PlatformError::Transport(format!("response_url: {e}")))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(http_status_error("the response_url", status, &response))
        }
    }

    /// The download client, or why there is none.
    fn web_client(&self) -> Result<&WebClient, PlatformError> {
        self.web
            .as_ref()
            .as_ref()
            .map_err(|e| PlatformError::Transport(e.clone()))
    }

    /// Downloads `url` with the bot token, refusing more than `max_bytes`.
    async fn download(&self, url: &Url, max_bytes: u64) -> Result<Vec<u8>, PlatformError> {
        let web = self.web_client()?;
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", self.cfg.bot_token.expose_secret()))
                .map_err(|_| {
                    PlatformError::Rejected("the bot token is not a valid header value".into())
                })?;
        auth.set_sensitive(true);
        let request = Request::builder()
            .method(Method::GET)
            .uri(url.as_str())
            .header(AUTHORIZATION, auth)
            .body(Full::default())
            .map_err(|_| PlatformError::Rejected("the file's address is not usable".into()))?;
        let response = web
            .request(request)
            .await
            .map_err(|e| PlatformError::Transport(format!("file download: {e}")))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(PlatformError::Rejected(format!(
                "the file host answered {status} (a redirect), which is not followed with the bot token"
            )));
        }
        if !status.is_success() {
            return Err(http_status_error("the file host", status, &response));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if is_html(content_type) {
            return Err(PlatformError::Rejected(
                "Slack answered with a sign-in page instead of the file; check that the app \
                 has the files:read scope and is in the channel"
                    .into(),
            ));
        }
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(size) = declared.filter(|&size| size > max_bytes) {
            return Err(PlatformError::TooLarge {
                size,
                limit: max_bytes,
            });
        }
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| PlatformError::Transport(format!("file download: {e}")))?;
            if let Ok(data) = frame.into_data() {
                let size = (bytes.len() + data.len()) as u64;
                if size > max_bytes {
                    return Err(PlatformError::TooLarge {
                        size,
                        limit: max_bytes,
                    });
                }
                bytes.extend_from_slice(&data);
            }
        }
        Ok(bytes)
    }
}

#[async_trait]
impl Platform for SlackPlatform {
    fn connected(&self) -> bool {
        self.shared
            .connected
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn limits(&self) -> Limits {
        Limits {
            max_message_chars: MARKDOWN_BLOCK_MAX,
            min_edit_interval: MIN_EDIT_INTERVAL,
        }
    }

    fn render(&self, markdown: &str) -> String {
        block_markdown::to_markdown_block(markdown)
    }

    fn render_stream(&self, markdown: &str) -> String {
        block_markdown::streamable(markdown)
    }

    fn write_interval(&self, _to: &ReplyTarget, native: bool) -> Duration {
        let method = if native {
            "chat.appendStream"
        } else {
            "chat.update"
        };
        pace::interval(
            self.shared.writers.active(method),
            rate::rate(method),
            rate::available(&self.api, method, None),
        )
    }

    async fn post(&self, to: &ReplyTarget, text: &str) -> Result<MessageRef, PlatformError> {
        let body = message_body(&to.channel, to.thread.as_deref(), None, text, false);
        let posted: Written = self.call("chat.postMessage", &body, WRITE).await?;
        let message = MessageRef {
            channel: posted.channel.unwrap_or_else(|| to.channel.clone()),
            id: posted.ts,
        };
        self.shared.remember(&message, Sent::posted(text, to));
        // A posted answer is written on with chat.update.
        self.shared.writers.wrote("chat.update", &writer(&message));
        Ok(message)
    }

    async fn edit(&self, message: &MessageRef, text: &str) -> Result<(), PlatformError> {
        // A streamed message is stopped before it is rewritten: Slack does not update a
        // message that is still streaming.
        if let Err(e @ PlatformError::RateLimited { .. }) =
            self.stop_stream(&message.channel, &message.id, None).await
        {
            return Err(e);
        }
        let body = message_body(&message.channel, None, Some(&message.id), text, false);
        self.call::<Written>("chat.update", &body, WRITE).await?;
        self.shared.set_text(message, text);
        self.shared.writers.wrote("chat.update", &writer(message));
        Ok(())
    }

    async fn delete(&self, message: &MessageRef) -> Result<(), PlatformError> {
        let body = json!({ "channel": message.channel, "ts": message.id });
        self.call::<Value>("chat.delete", &body, OTHER).await?;
        self.shared.forget(message);
        Ok(())
    }

    async fn ephemeral(
        &self,
        to: &ReplyTarget,
        user: &Author,
        text: &str,
    ) -> Result<(), PlatformError> {
        let target = SlackTarget::of(to);
        if let Some(url) = target.response_url.as_deref() {
            match self.respond(url, text).await {
                Ok(()) => return Ok(()),
                // A response_url expires (30 minutes, 5 uses): the Web API still works.
                Err(e) => tracing::debug!(error = %e, "response_url failed; chat.postEphemeral"),
            }
        }
        let recipient = if target.user.is_empty() {
            &user.id
        } else {
            &target.user
        };
        let mut body = json!({
            "channel": to.channel,
            "user": recipient,
            "text": mrkdwn_text(text),
        });
        if let Some(thread) = &to.thread {
            body["thread_ts"] = json!(thread);
        }
        self.call::<Value>("chat.postEphemeral", &body, OTHER)
            .await?;
        Ok(())
    }

    async fn status(&self, to: &ReplyTarget, status: &Status) -> Result<(), PlatformError> {
        // A status is cosmetic: failures are logged, never returned.
        let target = SlackTarget::of(to);
        if target.assistant {
            let Some(thread) = to.thread.as_deref() else {
                return Ok(());
            };
            let key = (to.channel.clone(), thread.to_string());
            let text = match status {
                Status::Thinking => THINKING.to_string(),
                Status::Progress(p) => truncate_chars(p.trim(), STATUS_CHARS),
                Status::Clear if !self.shared.status_shown(&key) => return Ok(()),
                Status::Clear => String::new(),
            };
            let show = !text.is_empty();
            let body = json!({ "channel_id": to.channel, "thread_ts": thread, "status": text });
            self.set_status("assistant.threads.setStatus", body, key, show, None)
                .await;
            return Ok(());
        }
        let Some(message) = to.message.as_deref() else {
            return Ok(());
        };
        let key = (to.channel.clone(), message.to_string());
        let shown = self.shared.status_shown(&key);
        let (method, ignored, show) = match status {
            Status::Thinking | Status::Progress(_) if !shown => {
                ("reactions.add", "already_reacted", true)
            }
            Status::Clear if shown => ("reactions.remove", "no_reaction", false),
            _ => return Ok(()),
        };
        let body = json!({ "channel": to.channel, "timestamp": message, "name": WORKING_REACTION });
        self.set_status(method, body, key, show, Some(ignored))
            .await;
        Ok(())
    }

    async fn finished(
        &self,
        to: &ReplyTarget,
        state: &FinalState,
        messages: &[MessageRef],
    ) -> Result<(), PlatformError> {
        let mut result = Ok(());
        let last = messages.last();
        // Streams this reply opened and will not write again, the last message's aside:
        // those the reply lost track of (an append failed) included.
        for (channel, ts) in self
            .shared
            .open_streams_in(&to.channel, to.thread.as_deref())
        {
            if last.is_some_and(|m| m.channel == channel && m.id == ts) {
                continue;
            }
            if let Err(e) = self.stop_stream(&channel, &ts, None).await {
                tracing::debug!(error = %e, "stopping a stream failed");
            }
        }
        if let Some(last) = last {
            let answered = matches!(state, FinalState::Complete | FinalState::Truncated);
            if answered {
                result = self.add_feedback(last).await;
            } else if let Err(e) = self.stop_stream(&last.channel, &last.id, None).await {
                result = Err(e);
            }
        }
        self.status(to, &Status::Clear).await?;
        let target = SlackTarget::of(to);
        if target.assistant && !matches!(state, FinalState::Failed) {
            if let Some(first) = messages.first() {
                self.set_title(to, first).await;
            }
        }
        for m in messages {
            self.shared.writers.done(&writer(m));
            if !self.shared.is_open_stream(&m.channel, &m.id) {
                self.shared.forget(m);
            }
        }
        result
    }

    async fn open_stream(
        &self,
        to: &ReplyTarget,
    ) -> Result<Option<Box<dyn AppendStream>>, PlatformError> {
        // chat.startStream needs a thread to stream into.
        let Some(thread) = to.thread.as_deref() else {
            return Ok(None);
        };
        let target = SlackTarget::of(to);
        if self.shared.streaming_off(&target.team) || self.shared.channel_streaming_off(&to.channel)
        {
            return Ok(None);
        }
        let mut body = json!({ "channel": to.channel, "thread_ts": thread });
        if !is_dm(&to.channel) {
            // Outside DMs Slack wants to know whom the stream answers, in their own team.
            if target.user.is_empty() || target.team.is_empty() {
                return Ok(None);
            }
            let team = self.recipient_team(&target).await;
            body["recipient_user_id"] = json!(target.user);
            body["recipient_team_id"] = json!(team);
        }
        // With no allowance left the answer posts and updates at once, rather than waiting
        // for chat.startStream's (a Tier 2 method: 20 a minute).
        let started =
            call::<Written>(&self.api, "chat.startStream", &body, Patience::Reroute).await;
        match started {
            Ok(started) => {
                let message = MessageRef {
                    channel: started.channel.unwrap_or_else(|| to.channel.clone()),
                    id: started.ts,
                };
                self.shared
                    .remember(&message, Sent::streaming(to, &target.team));
                Ok(Some(Box::new(SlackStream {
                    api: self.api.clone(),
                    shared: self.shared.clone(),
                    team: target.team,
                    message,
                })))
            }
            Err(SlackClientError::RateLimitError(_)) => {
                tracing::debug!("no chat.startStream allowance; this answer posts and updates");
                Ok(None)
            }
            Err(e) => {
                self.note_stream_error(&e, &target.team, &to.channel);
                match stream_errors::reach(&e) {
                    Reach::Call => {
                        // Only this answer posts and updates; the next one streams again.
                        let e = map_error(&self.api, &e);
                        tracing::info!(error = %e, "this answer could not stream; posting it");
                        Err(e)
                    }
                    Reach::Workspace | Reach::Channel => Ok(None),
                }
            }
        }
    }

    /// The thread's messages before the one being answered, oldest first: the newest `limit`,
    /// read page by page with GET `conversations.replies` ([`crate::thread`]).
    async fn history(
        &self,
        to: &ReplyTarget,
        limit: usize,
    ) -> Result<Vec<PriorMessage>, PlatformError> {
        let Some(thread) = &to.thread else {
            return Ok(Vec::new());
        };
        crate::thread::history(&self.api, &to.channel, thread, to.message.as_deref(), limit)
            .await
            .map_err(|e| match e {
                crate::thread::ReadError::Budget(retry_after) => {
                    PlatformError::RateLimited { retry_after }
                }
                crate::thread::ReadError::Slack(e) => map_error(&self.api, &e),
            })
    }

    async fn fetch(
        &self,
        attachment: &Attachment,
        max_bytes: u64,
    ) -> Result<Vec<u8>, PlatformError> {
        let url = Url::parse(&attachment.locator)
            .map_err(|_| PlatformError::Rejected("the file's address is not a URL".into()))?;
        if !token_allowed(&url, &self.cfg.api_url) {
            return Err(PlatformError::Rejected(format!(
                "files are downloaded only from {FILE_HOST} or the Slack API's host, not from {}",
                url.host_str().unwrap_or("an address without a host")
            )));
        }
        if attachment.size > max_bytes {
            return Err(PlatformError::TooLarge {
                size: attachment.size,
                limit: max_bytes,
            });
        }
        tokio::time::timeout(FETCH_TIMEOUT, self.download(&url, max_bytes))
            .await
            .map_err(|_| PlatformError::Transport("the file download timed out".into()))?
    }
}

/// A reply's native stream: `chat.appendStream` per append. `stop` leaves the stream open
/// and returns the message: the stream is stopped by the next write to the message, or by
/// [`Platform::finished`] with the feedback buttons in `chat.stopStream`'s `blocks`, which
/// saves a `chat.update` per answer.
struct SlackStream {
    /// The Web API.
    api: Api,
    /// Where the text and the streaming fallback are remembered.
    shared: Arc<Shared>,
    /// The workspace, for the fallback memory.
    team: String,
    /// The streamed message.
    message: MessageRef,
}

#[async_trait]
impl AppendStream for SlackStream {
    async fn append(&mut self, text: &str) -> Result<(), PlatformError> {
        for piece in chunks(text, APPEND_STREAM_MAX) {
            let body = json!({
                "channel": self.message.channel,
                "ts": self.message.id,
                "markdown_text": piece,
            });
            if let Err(e) = call::<Value>(&self.api, "chat.appendStream", &body, WRITE).await {
                match stream_errors::reach(&e) {
                    Reach::Workspace => self.shared.turn_streaming_off(&self.team),
                    Reach::Channel => self
                        .shared
                        .turn_channel_streaming_off(&self.message.channel),
                    Reach::Call => {}
                }
                return Err(map_error(&self.api, &e));
            }
            self.shared.append_text(&self.message, piece);
            self.shared
                .writers
                .wrote("chat.appendStream", &writer(&self.message));
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<MessageRef, PlatformError> {
        Ok(self.message.clone())
    }

    fn message(&self) -> Option<MessageRef> {
        Some(self.message.clone())
    }
}

/// What is remembered of a message the adapter wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    /// The answer text (Markdown) it shows, for `chat.update` with the feedback buttons.
    text: String,
    /// The thread it is in, to find a reply's streams.
    thread: Option<String>,
    /// The workspace of a native stream that is still open; `None` once stopped or for a
    /// posted message.
    open_stream: Option<String>,
}

impl Sent {
    fn posted(text: &str, to: &ReplyTarget) -> Self {
        Self {
            text: text.to_string(),
            thread: to.thread.clone(),
            open_stream: None,
        }
    }

    fn streaming(to: &ReplyTarget, team: &str) -> Self {
        Self {
            text: String::new(),
            thread: to.thread.clone(),
            open_stream: Some(team.to_string()),
        }
    }
}

/// Memory shared by every reply of one [`SlackPlatform`].
#[derive(Default)]
struct Shared {
    /// Workspaces without native streaming: they get post plus update.
    no_stream: Mutex<HashSet<String>>,
    /// Channels whose kind takes no streams.
    no_stream_channels: Mutex<HashSet<String>>,
    /// The replies writing lately, for their write interval.
    writers: Writers,
    /// Messages written, by (channel, ts).
    sent: Mutex<Recent<(String, String), Sent>>,
    /// Statuses showing, by (channel, thread) or (channel, message).
    statuses: Mutex<Recent<(String, String), ()>>,
    /// Assistant threads titled, by (channel, thread).
    titled: Mutex<Recent<(String, String), ()>>,
    /// Events are being received (Socket Mode started, or the HTTP endpoint listening).
    connected: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn streaming_off(&self, team: &str) -> bool {
        lock(&self.no_stream).contains(team)
    }

    fn turn_streaming_off(&self, team: &str) {
        lock(&self.no_stream).insert(team.to_string());
    }

    fn channel_streaming_off(&self, channel: &str) -> bool {
        lock(&self.no_stream_channels).contains(channel)
    }

    fn turn_channel_streaming_off(&self, channel: &str) {
        lock(&self.no_stream_channels).insert(channel.to_string());
    }

    fn remember(&self, m: &MessageRef, sent: Sent) {
        lock(&self.sent).insert(key(m), sent);
    }

    fn forget(&self, m: &MessageRef) {
        lock(&self.sent).remove(&key(m));
    }

    fn set_text(&self, m: &MessageRef, text: &str) {
        if let Some(sent) = lock(&self.sent).get_mut(&key(m)) {
            sent.text = text.to_string();
        }
    }

    fn append_text(&self, m: &MessageRef, text: &str) {
        if let Some(sent) = lock(&self.sent).get_mut(&key(m)) {
            sent.text.push_str(text);
        }
    }

    fn text_of(&self, channel: &str, ts: &str) -> Option<String> {
        lock(&self.sent)
            .get(&(channel.to_string(), ts.to_string()))
            .map(|s| s.text.clone())
    }

    /// The workspace of message `channel`/`ts` if it is a native stream still open.
    fn open_stream_team(&self, channel: &str, ts: &str) -> Option<String> {
        lock(&self.sent)
            .get(&(channel.to_string(), ts.to_string()))
            .and_then(|s| s.open_stream.clone())
    }

    fn is_open_stream(&self, channel: &str, ts: &str) -> bool {
        self.open_stream_team(channel, ts).is_some()
    }

    fn stream_stopped(&self, channel: &str, ts: &str) {
        if let Some(sent) = lock(&self.sent).get_mut(&(channel.to_string(), ts.to_string())) {
            sent.open_stream = None;
        }
    }

    /// The open streams in `channel`'s `thread`, as (channel, ts).
    fn open_streams_in(&self, channel: &str, thread: Option<&str>) -> Vec<(String, String)> {
        lock(&self.sent)
            .iter()
            .filter(|((c, _), s)| {
                c == channel && s.open_stream.is_some() && s.thread.as_deref() == thread
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn status_shown(&self, key: &(String, String)) -> bool {
        lock(&self.statuses).get(key).is_some()
    }

    fn set_status_shown(&self, key: (String, String), shown: bool) {
        let mut statuses = lock(&self.statuses);
        if shown {
            statuses.insert(key, ());
        } else {
            statuses.remove(&key);
        }
    }

    /// Records that the thread is titled; false if it already was.
    fn mark_titled(&self, channel: &str, thread: &str) -> bool {
        let mut titled = lock(&self.titled);
        let key = (channel.to_string(), thread.to_string());
        if titled.get(&key).is_some() {
            return false;
        }
        titled.insert(key, ());
        true
    }
}

/// A map that forgets its oldest entries past [`REMEMBERED`].
struct Recent<K, V> {
    /// Entries with the sequence number of their insertion.
    map: HashMap<K, (u64, V)>,
    /// Insertion order; entries whose sequence number no longer matches are stale.
    order: VecDeque<(u64, K)>,
    /// The next sequence number.
    next: u64,
    /// How many entries are kept.
    cap: usize,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
            cap: REMEMBERED,
        }
    }
}

impl<K: Hash + Eq + Clone, V> Recent<K, V> {
    fn insert(&mut self, k: K, v: V) {
        let seq = self.next;
        self.next += 1;
        self.map.insert(k.clone(), (seq, v));
        self.order.push_back((seq, k));
        while self.map.len() > self.cap || self.order.len() > self.cap.saturating_mul(2) {
            let Some((seq, k)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&k).is_some_and(|(s, _)| *s == seq) {
                self.map.remove(&k);
            }
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|(_, v)| v)
    }

    fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k).map(|(_, v)| v)
    }

    fn remove(&mut self, k: &K) {
        self.map.remove(k);
    }

    fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, (_, v))| (k, v))
    }
}

/// Locks `m`; a panic elsewhere while it was held leaves data that is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key(m: &MessageRef) -> (String, String) {
    (m.channel.clone(), m.id.clone())
}

/// A message's name among the writers ([`Writers`]).
fn writer(m: &MessageRef) -> String {
    format!("{}:{}", m.channel, m.id)
}

/// The part of a `chat.postMessage` / `chat.update` / `chat.startStream` answer we read.
#[derive(Debug, Deserialize)]
struct Written {
    /// The channel, as Slack names it.
    #[serde(default)]
    channel: Option<String>,
    /// The message's timestamp, its id.
    ts: String,
}

/// Calls Web API `method` with a JSON `body` through slack-morphism's session (token, error
/// decoding), counting the call. Its allowance is spent first ([`rate::before_call`], waiting
/// as `patience` allows); a call the budget holds back is not sent, and comes back as a rate
/// limit whose `retry_after` is the wait. A 429 holds the method (for `chat.postMessage`, the
/// channel) for every conversation.
async fn call<R: for<'de> Deserialize<'de> + Send>(
    api: &Api,
    method: &str,
    body: &Value,
    patience: Patience,
) -> Result<R, SlackClientError> {
    let channel = body.get("channel").and_then(Value::as_str);
    if let Err(wait) = rate::before_call(api, method, channel, patience).await {
        return Err(SlackClientError::RateLimitError(
            SlackRateLimitError::new().with_retry_after(wait),
        ));
    }
    anchorbot_platform::metrics::api_call(rate::PLATFORM, method);
    let session = api.session();
    let result = session.http_session_api.http_post(method, body, None).await;
    if let Err(e) = &result {
        anchorbot_platform::metrics::api_error(rate::PLATFORM, method);
        if let SlackClientError::RateLimitError(r) = e {
            anchorbot_platform::metrics::rate_limit_wait(rate::PLATFORM, method);
            rate::after_429(api, method, channel, r.retry_after, patience);
        }
    }
    result
}

/// The contract's error for a slack-morphism error; counts rate limits. Only codes and
/// statuses are kept: response bodies stay out of errors.
pub(crate) fn map_error(api: &Api, e: &SlackClientError) -> PlatformError {
    match e {
        SlackClientError::RateLimitError(r) => {
            api.rate_limited.fetch_add(1, Ordering::Relaxed);
            PlatformError::RateLimited {
                retry_after: r.retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
            }
        }
        SlackClientError::ApiError(a) => PlatformError::Rejected(a.code.clone()),
        SlackClientError::HttpError(h) if h.status_code.is_server_error() => {
            PlatformError::Transport(format!("Slack answered HTTP {}", h.status_code))
        }
        SlackClientError::HttpError(h) => {
            PlatformError::Rejected(format!("Slack answered HTTP {}", h.status_code))
        }
        SlackClientError::ProtocolError(p) => {
            PlatformError::Transport(format!("unreadable answer from Slack: {}", p.json_error))
        }
        SlackClientError::EndOfStream(_) => {
            PlatformError::Transport("Slack closed the connection".into())
        }
        SlackClientError::HttpProtocolError(_) | SlackClientError::SystemError(_) => {
            PlatformError::Transport(format!("cannot reach Slack: {e}"))
        }
        SlackClientError::SocketModeProtocolError(s) => PlatformError::Transport(s.message.clone()),
    }
}

/// The Web API error code of `e`, if Slack answered with one.
fn api_code(e: &SlackClientError) -> Option<&str> {
    match e {
        SlackClientError::ApiError(a) => Some(a.code.as_str()),
        _ => None,
    }
}

/// The error for a non-success HTTP answer from `who`.
fn http_status_error<B>(who: &str, status: StatusCode, r: &hyper::Response<B>) -> PlatformError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = r
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs);
        PlatformError::RateLimited { retry_after }
    } else if status.is_server_error() {
        PlatformError::Transport(format!("{who} answered {status}"))
    } else {
        PlatformError::Rejected(format!("{who} answered {status}"))
    }
}

/// Builds the download client.
pub(crate) fn web_client() -> Result<WebClient, String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(crate::client::tls_provider())
        .map_err(|e| format!("cannot load the system's TLS root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https))
}

/// Whether the bot token may be sent to `url`: `https://files.slack.com`, or the origin
/// (scheme, host and port) of `api_url`.
pub fn token_allowed(url: &Url, api_url: &str) -> bool {
    if url.scheme() == "https"
        && url.host_str() == Some(FILE_HOST)
        && url.port_or_known_default() == Some(443)
    {
        return true;
    }
    let Ok(api) = Url::parse(api_url) else {
        return false;
    };
    url.host_str().is_some()
        && url.scheme() == api.scheme()
        && url.host_str() == api.host_str()
        && url.port_or_known_default() == api.port_or_known_default()
}

/// Whether a `Content-Type` is HTML.
fn is_html(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/html"))
}

/// The body of `chat.postMessage` (no `ts`) or `chat.update` (`ts`): the answer in a
/// `markdown` block, a short notification fallback in `text`, and with `feedback` the
/// feedback buttons under the answer.
fn message_body(
    channel: &str,
    thread: Option<&str>,
    ts: Option<&str>,
    markdown: &str,
    feedback: bool,
) -> Value {
    let mut blocks = vec![markdown_block(markdown)];
    if feedback {
        blocks.push(feedback_block());
    }
    let mut body = Map::new();
    body.insert("channel".into(), json!(channel));
    if let Some(ts) = ts {
        body.insert("ts".into(), json!(ts));
    }
    if let Some(thread) = thread {
        body.insert("thread_ts".into(), json!(thread));
    }
    body.insert("text".into(), json!(fallback_text(markdown)));
    body.insert("blocks".into(), Value::Array(blocks));
    Value::Object(body)
}

/// A `markdown` block holding `markdown` (Slack renders standard Markdown in it).
fn markdown_block(markdown: &str) -> Value {
    json!({ "type": "markdown", "text": markdown })
}

/// The `context_actions` block with the 👍/👎 `feedback_buttons`.
pub fn feedback_block() -> Value {
    json!({
        "type": "context_actions",
        "elements": [{
            "type": "feedback_buttons",
            "action_id": FEEDBACK_ACTION_ID,
            "positive_button": {
                "text": { "type": "plain_text", "text": "👍" },
                "value": FEEDBACK_POSITIVE,
                "accessibility_label": "Mark this answer as helpful",
            },
            "negative_button": {
                "text": { "type": "plain_text", "text": "👎" },
                "value": FEEDBACK_NEGATIVE,
                "accessibility_label": "Mark this answer as not helpful",
            },
        }],
    })
}

/// The notification fallback: the start of the answer, in mrkdwn. Cut before converting, so
/// the conversion balances what the cut opened.
fn fallback_text(markdown: &str) -> String {
    let cut = truncate_chars(markdown.trim(), FALLBACK_CHARS);
    let text = to_mrkdwn(&cut);
    if text.trim().is_empty() {
        "…".to_string()
    } else {
        text
    }
}

/// Markdown as mrkdwn for the surfaces that take only `text`, within Slack's text limit.
fn mrkdwn_text(markdown: &str) -> String {
    let text = to_mrkdwn(markdown);
    if text.chars().count() > MESSAGE_TEXT_MAX {
        truncate_chars(&text, MESSAGE_TEXT_MAX)
    } else {
        text
    }
}

/// An assistant thread's title from the start of its answer: the first line, without
/// Markdown markers, at most [`TITLE_CHARS`] characters.
fn title_of(answer: &str) -> Option<String> {
    let line = answer.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line.trim_start_matches(|c: char| "#>-+ ".contains(c));
    let plain: String = line.chars().filter(|c| !"*_`~".contains(*c)).collect();
    let plain = plain.trim();
    (!plain.is_empty()).then(|| truncate_chars(plain, TITLE_CHARS))
}

/// `s` cut to at most `max` characters, ending in "…" when cut.
fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `text` in pieces of at most `max` characters, cut at character boundaries.
fn chunks(text: &str, max: usize) -> Vec<&str> {
    let max = max.max(1);
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use slack_morphism::errors::{SlackClientApiError, SlackRateLimitError};

    use super::*;

    fn platform() -> SlackPlatform {
        let mut cfg = SlackConfig::new(SecretString::from("xoxb-test-token"));
        cfg.api_url = "http://127.0.0.1:9/api".into();
        let api = Api::new(&cfg).expect("client");
        SlackPlatform::new(cfg, api)
    }

    fn target(channel: &str, thread: Option<&str>, t: SlackTarget) -> ReplyTarget {
        t.into_target(channel, thread, Some("1.0"))
    }

    fn slack_target(team: &str) -> SlackTarget {
        SlackTarget {
            team: team.into(),
            user: "U1".into(),
            ..Default::default()
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn it_is_a_shareable_platform() {
        fn shareable<T: Platform + Clone + Send + Sync + 'static>() {}
        shareable::<SlackPlatform>();
    }

    #[test]
    fn the_token_goes_only_to_the_file_host_and_the_api_origin() {
        let api = "https://slack.com/api";
        assert!(token_allowed(
            &url("https://files.slack.com/files-pri/T1-F1/download/a.pdf"),
            api
        ));
        assert!(token_allowed(&url("https://slack.com/files/x"), api));
        for foreign in [
            "http://files.slack.com/files-pri/a",
            "https://files.slack.com:8443/a",
            "https://files.slack.com.evil.example/a",
            "https://evil.example/files.slack.com/a",
            "https://evil.example/?u=https://files.slack.com/",
            "https://api.slack.com/a",
            "http://slack.com/a",
            "file:///etc/passwd",
        ] {
            assert!(!token_allowed(&url(foreign), api), "{foreign}");
        }
        let fake = "http://127.0.0.1:8080/api/";
        assert!(token_allowed(&url("http://127.0.0.1:8080/files/a"), fake));
        assert!(!token_allowed(&url("http://127.0.0.1:8081/files/a"), fake));
        assert!(!token_allowed(&url("http://localhost:8080/files/a"), fake));
        assert!(!token_allowed(&url("http://127.0.0.1:8080/a"), "not a url"));
    }

    #[tokio::test]
    async fn a_foreign_file_is_refused_before_any_request() {
        let p = platform();
        let file = Attachment {
            name: "a.pdf".into(),
            declared_mime: None,
            size: 10,
            locator: "https://evil.example/a.pdf".into(),
        };
        match p.fetch(&file, 100).await {
            Err(PlatformError::Rejected(why)) => {
                assert!(why.contains("evil.example"), "{why}");
                assert!(!why.contains("xoxb"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let not_a_url = Attachment {
            locator: "F123".into(),
            ..file
        };
        assert!(matches!(
            p.fetch(&not_a_url, 100).await,
            Err(PlatformError::Rejected(_))
        ));
    }

    #[tokio::test]
    async fn the_declared_size_is_checked_before_downloading() {
        let p = platform();
        let file = Attachment {
            name: "big.pdf".into(),
            declared_mime: None,
            size: 5_000,
            locator: "https://files.slack.com/files-pri/T-F/download/big.pdf".into(),
        };
        match p.fetch(&file, 1_000).await {
            Err(PlatformError::TooLarge { size, limit }) => {
                assert_eq!((size, limit), (5_000, 1_000))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn html_is_the_sign_in_page() {
        assert!(is_html("text/html"));
        assert!(is_html("text/html; charset=utf-8"));
        assert!(is_html("TEXT/HTML"));
        assert!(!is_html("application/pdf"));
        assert!(!is_html("text/plain"));
        assert!(!is_html(""));
    }

    #[test]
    fn the_feedback_block_has_slacks_documented_shape() {
        let expected = json!({"type":"context_actions","elements":[{"type":"feedback_buttons","action_id":"anchorbot_feedback","positive_button":{"text":{"type":"plain_text","text":"👍"},"value":"good","accessibility_label":"Mark this answer as helpful"},"negative_button":{"text":{"type":"plain_text","text":"👎"},"value":"bad","accessibility_label":"Mark this answer as not helpful"}}]});
        assert_eq!(feedback_block(), expected);
        // slack-morphism models it too: the shape is one it reads back.
        let typed: slack_morphism::prelude::SlackBlock =
            serde_json::from_value(expected).expect("a typed block");
        assert!(matches!(
            typed,
            slack_morphism::prelude::SlackBlock::ContextActions(_)
        ));
    }

    #[test]
    fn an_answer_lives_in_a_markdown_block_with_a_short_fallback() {
        let answer = format!("**Yes.** See `a<b`.\n\n{}", "word ".repeat(200));
        let body = message_body("C1", Some("1.5"), None, &answer, false);
        assert_eq!(body["channel"], "C1");
        assert_eq!(body["thread_ts"], "1.5");
        assert!(body.get("ts").is_none());
        assert_eq!(
            body["blocks"],
            json!([{ "type": "markdown", "text": answer }])
        );
        let text = body["text"].as_str().expect("text");
        assert!(text.starts_with("*Yes.* See `a&lt;b`."), "{text}");
        assert!(text.chars().count() <= FALLBACK_CHARS + 10, "{text}");

        let update = message_body("C1", None, Some("2.5"), "done", true);
        assert_eq!(update["ts"], "2.5");
        assert!(update.get("thread_ts").is_none());
        assert_eq!(
            update["blocks"],
            json!([{ "type": "markdown", "text": "done" }, feedback_block()])
        );
    }

    #[test]
    fn the_fallback_never_is_empty_and_fences_stay_balanced() {
        assert_eq!(fallback_text("   "), "…");
        let code = format!("```rust\n{}\n```", "let x = 1;\n".repeat(100));
        let text = fallback_text(&code);
        assert_eq!(text.matches("```").count() % 2, 0, "{text}");
    }

    #[test]
    fn titles_come_from_the_first_line_of_the_answer() {
        assert_eq!(
            title_of("\n## **Quarterly** report\nmore").as_deref(),
            Some("Quarterly report")
        );
        assert_eq!(title_of("   \n  ").as_deref(), None);
        let long = title_of(&"word ".repeat(40)).expect("title");
        assert_eq!(long.chars().count(), TITLE_CHARS);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn appends_are_cut_at_the_limit_on_character_boundaries() {
        assert!(chunks("", 3).is_empty());
        assert_eq!(chunks("abcdefg", 3), ["abc", "def", "g"]);
        assert_eq!(chunks("ééééé", 2), ["éé", "éé", "é"]);
        let big = "x".repeat(APPEND_STREAM_MAX * 2 + 1);
        let pieces = chunks(&big, APPEND_STREAM_MAX);
        assert_eq!(pieces.len(), 3);
        assert!(pieces
            .iter()
            .all(|p| p.chars().count() <= APPEND_STREAM_MAX));
    }

    #[test]
    fn slack_errors_map_to_the_contract_and_rate_limits_are_counted() {
        let p = platform();
        let limited = SlackClientError::RateLimitError(
            SlackRateLimitError::new().with_retry_after(Duration::from_secs(7)),
        );
        assert!(matches!(
            map_error(&p.api, &limited),
            PlatformError::RateLimited { retry_after } if retry_after == Duration::from_secs(7)
        ));
        assert_eq!(p.api.rate_limited.load(Ordering::Relaxed), 1);
        let refused = SlackClientError::ApiError(
            SlackClientApiError::new("channel_not_found".into())
                .with_http_response_body("{\"ok\":false}".into()),
        );
        match map_error(&p.api, &refused) {
            PlatformError::Rejected(code) => assert_eq!(code, "channel_not_found"),
            other => panic!("{other:?}"),
        }
    }

    /// A fake Web API whose `chat.startStream` answers `invalid_arguments` to the first call,
    /// and whose `users.info` says U1 belongs to team T2.
    fn first_stream_refused() -> impl Fn(&str) -> (u16, Vec<(&'static str, String)>, String) {
        let starts = std::sync::atomic::AtomicUsize::new(0);
        move |path: &str| {
            let json = vec![("Content-Type", "application/json".to_string())];
            match path.split('?').next().unwrap_or_default() {
                "/api/chat.startStream" if starts.fetch_add(1, Ordering::SeqCst) == 0 => (
                    200,
                    json,
                    r#"{"ok":false,"error":"invalid_arguments"}"#.into(),
                ),
                "/api/users.info" => (
                    200,
                    json,
                    r#"{"ok":true,"user":{"id":"U1","team_id":"T2","name":"u1"}}"#.into(),
                ),
                _ => (200, json, r#"{"ok":true,"channel":"C1","ts":"2.0"}"#.into()),
            }
        }
    }

    #[tokio::test]
    async fn a_per_call_stream_error_falls_back_for_that_answer_only() {
        let (base, seen) = serve(first_stream_refused()).await;
        let p = platform_at(&base);
        let to = target("C1", Some("1.0"), slack_target("T1"));
        for _ in 0..2 {
            let mut reply =
                anchorbot_platform::StreamingReply::new(Arc::new(p.clone()), to.clone());
            reply.update("Hello").await;
            reply
                .finish("Hello world", FinalState::Complete)
                .await
                .expect("finished");
        }
        let writes: Vec<String> = methods(&seen)
            .into_iter()
            .filter(|m| !m.starts_with("/api/users.info"))
            .collect();
        assert_eq!(
            writes,
            [
                "/api/chat.startStream",
                "/api/chat.postMessage",
                "/api/chat.update",
                "/api/chat.update",
                "/api/chat.startStream",
                "/api/chat.appendStream",
                "/api/chat.appendStream",
                "/api/chat.stopStream",
            ],
            "the refused answer was posted and updated; the next one streamed"
        );
        assert!(p.streams_in("T1"));
    }

    #[tokio::test]
    async fn a_stream_answers_the_asker_in_their_own_team() {
        let (base, seen) = serve(first_stream_refused()).await;
        let p = platform_at(&base);
        let to = target("C1", Some("1.0"), slack_target("T1"));
        for _ in 0..2 {
            let _ = p.open_stream(&to).await;
        }
        let starts: Vec<Value> = lock(&seen)
            .iter()
            .filter(|(path, _, _)| path == "/api/chat.startStream")
            .map(|(_, _, b)| b["recipient_team_id"].clone())
            .collect();
        assert_eq!(starts, [json!("T2"), json!("T2")]);
        let look_ups = methods(&seen)
            .iter()
            .filter(|m| m.starts_with("/api/users.info?"))
            .count();
        assert_eq!(look_ups, 1, "the team is asked once and remembered");
    }

    #[tokio::test]
    async fn without_start_stream_allowance_the_answer_posts_at_once() {
        let (base, seen) = serve(web_api(&[])).await;
        let p = platform_at(&base);
        let key = rate::key(&p.api.workspace(), "chat.startStream", None);
        p.api.budget.hold(&key, Duration::from_secs(60));
        let to = target("D1", Some("1.0"), slack_target("T1"));
        let started = std::time::Instant::now();
        let mut reply = anchorbot_platform::StreamingReply::new(Arc::new(p.clone()), to);
        reply.update("Hello").await;
        reply
            .finish("Hello world", FinalState::Complete)
            .await
            .expect("finished");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            methods(&seen),
            [
                "/api/chat.postMessage",
                "/api/chat.update",
                "/api/chat.update"
            ],
            "no chat.startStream was sent into the hold"
        );
        assert!(
            p.streams_in("T1"),
            "a spent allowance does not turn streaming off"
        );
    }

    #[tokio::test]
    async fn streaming_needs_a_thread_recipients_and_a_workspace_that_streams() {
        let p = platform();
        let no_thread = target("C1", None, slack_target("T1"));
        assert!(p.open_stream(&no_thread).await.expect("no call").is_none());
        let no_recipient = target("C1", Some("1.0"), SlackTarget::default());
        assert!(p
            .open_stream(&no_recipient)
            .await
            .expect("no call")
            .is_none());

        assert!(p.streams_in("T1"));
        p.shared.turn_streaming_off("T1");
        assert!(!p.streams_in("T1"));
        assert!(p.streams_in("T2"), "the memory is per workspace");
        let t1 = target("C1", Some("1.0"), slack_target("T1"));
        assert!(p.open_stream(&t1).await.expect("no call").is_none());
        // Clones share the memory.
        assert!(!p.clone().streams_in("T1"));
    }

    #[test]
    fn open_streams_are_found_per_thread_until_stopped() {
        let shared = Shared::default();
        let to = target("C1", Some("1.0"), slack_target("T1"));
        let m = MessageRef {
            channel: "C1".into(),
            id: "2.0".into(),
        };
        shared.remember(&m, Sent::streaming(&to, "T1"));
        shared.append_text(&m, "Hello ");
        shared.append_text(&m, "world");
        assert_eq!(shared.text_of("C1", "2.0").as_deref(), Some("Hello world"));
        assert_eq!(shared.open_stream_team("C1", "2.0").as_deref(), Some("T1"));
        assert_eq!(
            shared.open_streams_in("C1", Some("1.0")),
            [("C1".to_string(), "2.0".to_string())]
        );
        assert!(shared.open_streams_in("C1", Some("9.0")).is_empty());
        shared.stream_stopped("C1", "2.0");
        assert!(shared.open_streams_in("C1", Some("1.0")).is_empty());
        assert!(!shared.is_open_stream("C1", "2.0"));
        assert!(shared.mark_titled("C1", "1.0"));
        assert!(!shared.mark_titled("C1", "1.0"));
    }

    #[test]
    fn recent_memory_forgets_the_oldest_first() {
        let mut r: Recent<u32, u32> = Recent {
            cap: 3,
            ..Default::default()
        };
        for i in 0..5 {
            r.insert(i, i * 10);
        }
        assert!(r.get(&0).is_none() && r.get(&1).is_none());
        assert_eq!(r.get(&4), Some(&40));
        // Re-inserting refreshes an entry: it outlives the ones after it.
        r.insert(2, 21);
        r.insert(5, 50);
        r.insert(6, 60);
        assert_eq!(r.get(&2), Some(&21));
        assert!(r.get(&3).is_none());
        assert!(r.map.len() <= 3 && r.order.len() <= 6);
    }

    #[test]
    fn long_ephemeral_text_is_cut_to_slacks_limit() {
        let text = mrkdwn_text(&"a".repeat(MESSAGE_TEXT_MAX + 5));
        assert_eq!(text.chars().count(), MESSAGE_TEXT_MAX);
        assert_eq!(mrkdwn_text("**hi**"), "*hi*");
    }

    /// A request the local server received: path, `Authorization` header, JSON body.
    type Seen = (String, Option<String>, Value);

    /// A local HTTP server that answers every request with `respond(path)`: status, extra
    /// headers and body, sent without `Content-Length` (to the end of the connection) when
    /// the headers include `x-no-length`.
    async fn serve<F>(respond: F) -> (String, Arc<Mutex<Vec<Seen>>>)
    where
        F: Fn(&str) -> (u16, Vec<(&'static str, String)>, String) + Send + Sync + 'static,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let respond = Arc::new(respond);
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let respond = respond.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let header = |name: &str| {
                        head.lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.trim()
                                .eq_ignore_ascii_case(name)
                                .then(|| v.trim().to_string())
                        })
                    };
                    let length: usize = header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let path = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        // client.rs's `api_base` ends in a slash and slack-morphism adds
                        // another: `/api//chat.postMessage`.
                        .replace("//", "/");
                    let body = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
                    lock(&log).push((path.clone(), header("authorization"), body));
                    let (status, headers, body) = respond(&path);
                    let mut out = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
                    let mut sized = true;
                    for (k, v) in headers {
                        if k == "x-no-length" {
                            sized = false;
                        } else {
                            out.push_str(&format!("{k}: {v}\r\n"));
                        }
                    }
                    if sized {
                        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
                    }
                    out.push_str("\r\n");
                    out.push_str(&body);
                    let _ = socket.write_all(out.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        (base, seen)
    }

    /// A fake Web API: `ok` with a ts for every method, except `unsupported` ones.
    fn web_api(
        unsupported: &'static [&'static str],
    ) -> impl Fn(&str) -> (u16, Vec<(&'static str, String)>, String) {
        move |path: &str| {
            let json = vec![("Content-Type", "application/json".to_string())];
            let method = path.trim_start_matches("/api/");
            if unsupported.contains(&method) {
                return (200, json, r#"{"ok":false,"error":"unknown_method"}"#.into());
            }
            (200, json, r#"{"ok":true,"channel":"C1","ts":"2.0"}"#.into())
        }
    }

    fn platform_at(base: &str) -> SlackPlatform {
        let mut cfg = SlackConfig::new(SecretString::from("xoxb-test-token"));
        cfg.api_url = format!("{base}/api");
        let api = Api::new(&cfg).expect("client");
        SlackPlatform::new(cfg, api)
    }

    fn methods(seen: &Mutex<Vec<Seen>>) -> Vec<String> {
        lock(seen).iter().map(|(p, _, _)| p.clone()).collect()
    }

    fn body_of(seen: &Mutex<Vec<Seen>>, path: &str) -> Value {
        lock(seen)
            .iter()
            .find(|(p, _, _)| p == path)
            .map(|(_, _, b)| b.clone())
            .unwrap_or(Value::Null)
    }

    #[tokio::test]
    async fn a_streamed_answer_ends_with_the_feedback_buttons_in_stop_stream() {
        let (base, seen) = serve(web_api(&[])).await;
        let p = platform_at(&base);
        let to = target("C1", Some("1.0"), slack_target("T1"));
        let mut reply = anchorbot_platform::StreamingReply::new(Arc::new(p.clone()), to);
        reply.update("Hello").await;
        reply
            .finish("Hello world", FinalState::Complete)
            .await
            .expect("finished");
        assert_eq!(
            methods(&seen),
            [
                "/api/users.info?user=U1",
                "/api/chat.startStream",
                "/api/chat.appendStream",
                "/api/chat.appendStream",
                "/api/chat.stopStream"
            ]
        );
        let start = body_of(&seen, "/api/chat.startStream");
        assert_eq!(start["thread_ts"], "1.0");
        assert_eq!(start["recipient_user_id"], "U1");
        assert_eq!(start["recipient_team_id"], "T1");
        let appended: Vec<Value> = lock(&seen)
            .iter()
            .filter(|(p, _, _)| p == "/api/chat.appendStream")
            .map(|(_, _, b)| b["markdown_text"].clone())
            .collect();
        assert_eq!(appended, [json!("Hello"), json!(" world")]);
        let stop = body_of(&seen, "/api/chat.stopStream");
        assert_eq!(stop["ts"], "2.0");
        assert_eq!(stop["blocks"], json!([feedback_block()]));
        assert!(lock(&seen)
            .iter()
            .all(|(_, auth, _)| auth.as_deref() == Some("Bearer xoxb-test-token")));
        assert_eq!(reply.messages()[0].id, "2.0");
    }

    #[tokio::test]
    async fn a_workspace_without_streaming_gets_post_and_update_from_then_on() {
        let (base, seen) = serve(web_api(&["chat.startStream"])).await;
        let p = platform_at(&base);
        let to = target("C1", Some("1.0"), slack_target("T1"));
        for _ in 0..2 {
            let mut reply =
                anchorbot_platform::StreamingReply::new(Arc::new(p.clone()), to.clone());
            reply.update("Hello").await;
            reply
                .finish("Hello world", FinalState::Complete)
                .await
                .expect("finished");
        }
        assert_eq!(
            methods(&seen),
            [
                "/api/users.info?user=U1",
                "/api/chat.startStream",
                "/api/chat.postMessage",
                "/api/chat.update",
                "/api/chat.update",
                "/api/chat.postMessage",
                "/api/chat.update",
                "/api/chat.update",
            ],
            "the workspace is remembered"
        );
        let post = body_of(&seen, "/api/chat.postMessage");
        assert_eq!(post["thread_ts"], "1.0");
        assert_eq!(
            post["blocks"],
            json!([{ "type": "markdown", "text": "Hello" }])
        );
        // The final text, then the buttons under it (finished knows the answer is final).
        let updates: Vec<Value> = lock(&seen)
            .iter()
            .filter(|(p, _, _)| p == "/api/chat.update")
            .map(|(_, _, b)| b["blocks"].clone())
            .collect();
        assert_eq!(
            updates[0],
            json!([{ "type": "markdown", "text": "Hello world" }])
        );
        assert_eq!(
            updates[1],
            json!([{ "type": "markdown", "text": "Hello world" }, feedback_block()]),
        );
        assert!(!p.streams_in("T1"));
    }

    #[tokio::test]
    async fn a_failed_answer_gets_no_buttons_and_its_stream_is_stopped() {
        let (base, seen) = serve(web_api(&[])).await;
        let p = platform_at(&base);
        let to = target("C1", Some("1.0"), slack_target("T1"));
        let mut reply = anchorbot_platform::StreamingReply::new(Arc::new(p.clone()), to);
        reply
            .finish("The model is unreachable.", FinalState::Failed)
            .await
            .expect("finished");
        assert_eq!(
            methods(&seen),
            [
                "/api/users.info?user=U1",
                "/api/chat.startStream",
                "/api/chat.appendStream",
                "/api/chat.stopStream"
            ]
        );
        assert!(body_of(&seen, "/api/chat.stopStream")
            .get("blocks")
            .is_none());
    }

    #[tokio::test]
    async fn statuses_use_assistant_threads_or_a_reaction() {
        let (base, seen) = serve(web_api(&[])).await;
        let p = platform_at(&base);
        let assistant = target(
            "D1",
            Some("1.0"),
            SlackTarget {
                assistant: true,
                ..slack_target("T1")
            },
        );
        p.status(&assistant, &Status::Thinking).await.expect("ok");
        p.status(&assistant, &Status::Progress("reading a.pdf 1/2".into()))
            .await
            .expect("ok");
        p.status(&assistant, &Status::Clear).await.expect("ok");
        p.status(&assistant, &Status::Clear).await.expect("ok");
        let statuses: Vec<Value> = lock(&seen)
            .iter()
            .map(|(path, _, b)| {
                assert_eq!(path, "/api/assistant.threads.setStatus");
                b["status"].clone()
            })
            .collect();
        assert_eq!(
            statuses,
            [json!("is thinking…"), json!("reading a.pdf 1/2"), json!("")]
        );
        lock(&seen).clear();

        let channel = target("C1", Some("1.0"), slack_target("T1"));
        p.status(&channel, &Status::Thinking).await.expect("ok");
        p.status(&channel, &Status::Progress("x".into()))
            .await
            .expect("ok");
        p.status(&channel, &Status::Clear).await.expect("ok");
        assert_eq!(
            methods(&seen),
            ["/api/reactions.add", "/api/reactions.remove"]
        );
        let add = body_of(&seen, "/api/reactions.add");
        assert_eq!(
            add,
            json!({ "channel": "C1", "timestamp": "1.0", "name": "eyes" })
        );
    }

    #[tokio::test]
    async fn a_status_failure_never_fails() {
        let (base, _seen) = serve(|_: &str| (500, vec![], "oops".to_string())).await;
        let p = platform_at(&base);
        let to = target("C1", Some("1.0"), slack_target("T1"));
        assert!(p.status(&to, &Status::Thinking).await.is_ok());
    }

    #[tokio::test]
    async fn ephemeral_answers_use_the_response_url_without_the_token() {
        let (base, seen) = serve(web_api(&[])).await;
        let p = platform_at(&base);
        let user = Author {
            id: "U9".into(),
            display_name: "Ann".into(),
        };
        let with_url = target(
            "C1",
            None,
            SlackTarget {
                response_url: Some(format!("{base}/respond")),
                ..Default::default()
            },
        );
        p.ephemeral(&with_url, &user, "**done**")
            .await
            .expect("sent");
        let seen_now = lock(&seen).clone();
        assert_eq!(seen_now.len(), 1);
        assert_eq!(seen_now[0].0, "/respond");
        assert_eq!(seen_now[0].1, None, "no token on a response_url");
        assert_eq!(
            seen_now[0].2,
            json!({ "response_type": "ephemeral", "text": "*done*" })
        );
        lock(&seen).clear();

        let without = target("C1", Some("1.0"), SlackTarget::default());
        p.ephemeral(&without, &user, "hi").await.expect("sent");
        let body = body_of(&seen, "/api/chat.postEphemeral");
        assert_eq!(
            body,
            json!({ "channel": "C1", "user": "U9", "text": "hi", "thread_ts": "1.0" })
        );
    }

    #[tokio::test]
    async fn downloads_send_the_token_and_refuse_redirects_html_and_excess() {
        let (base, seen) = serve(|path: &str| match path {
            "/files/ok" => (
                200,
                vec![("Content-Type", "application/pdf".into())],
                "%PDF-1.4".into(),
            ),
            "/files/moved" => (
                302,
                vec![("Location", "https://evil.example/x".into())],
                String::new(),
            ),
            "/files/login" => (
                200,
                vec![("Content-Type", "text/html; charset=utf-8".into())],
                "<html>".into(),
            ),
            "/files/endless" => (200, vec![("x-no-length", String::new())], "x".repeat(5_000)),
            "/files/gone" => (404, vec![], String::new()),
            _ => (500, vec![], String::new()),
        })
        .await;
        let p = platform_at(&base);
        let file = |path: &str, size: u64| Attachment {
            name: "a.pdf".into(),
            declared_mime: None,
            size,
            locator: format!("{base}{path}"),
        };
        assert_eq!(
            p.fetch(&file("/files/ok", 8), 100).await.expect("bytes"),
            b"%PDF-1.4"
        );
        assert_eq!(lock(&seen)[0].1.as_deref(), Some("Bearer xoxb-test-token"));
        assert!(matches!(
            p.fetch(&file("/files/moved", 8), 100).await,
            Err(PlatformError::Rejected(why)) if why.contains("redirect")
        ));
        assert!(matches!(
            p.fetch(&file("/files/login", 8), 100).await,
            Err(PlatformError::Rejected(why)) if why.contains("sign-in")
        ));
        assert!(matches!(
            p.fetch(&file("/files/endless", 8), 1_000).await,
            Err(PlatformError::TooLarge { limit: 1_000, .. })
        ));
        assert!(matches!(
            p.fetch(&file("/files/gone", 8), 100).await,
            Err(PlatformError::Rejected(why)) if why.contains("404")
        ));
        assert_eq!(lock(&seen).len(), 5, "no request followed the redirect");
    }
}
