//! Outbound: [`SlackPlatform`], the platform contract's [`Platform`] for Slack.
//!
//! - Answers live in a `markdown` block (Slack shows only the blocks of a message that has
//!   them), with a short mrkdwn `text` as the notification fallback: `chat.postMessage`,
//!   `chat.update`, `chat.delete` (`blocks.rs`).
//! - Native streaming: `chat.startStream`, `chat.appendStream`, `chat.stopStream`, to the
//!   asking user in their own team (from `users.info`). A workspace (or channel kind) that
//!   has no streaming is remembered and gets post plus update; any other streaming error makes
//!   only that answer post and update (`stream.rs`, [`crate::stream_errors`]).
//! - Answers are converted to what a `markdown` block renders ([`crate::markdown::markdown_block`]).
//! - Status: `assistant.threads.setStatus` in assistant threads, an `eyes` reaction elsewhere.
//! - Feedback buttons (a `context_actions` block) on the last message of a final answer, and
//!   the title of an assistant thread.
//! - Ephemeral answers through a slash command's `response_url`, else `chat.postEphemeral`.
//! - File downloads with the bot token, which goes only to `files.slack.com` or to the origin
//!   of `api_url`, never on a redirect (`files.rs`).
//! - What is remembered across replies is in `state.rs`; Slack's errors become the contract's
//!   in `errors.rs`.
//!
//! Every Web API call spends the shared rate budget first ([`crate::rate`]): none is sent into
//! a 429's hold, a stream without allowance falls back to post plus update, writes are spaced
//! by how many replies share the allowance ([`crate::pace`]), and taking the working reaction
//! off waits for its allowance in the background. The calls go through slack-morphism's
//! session; the responses are read leniently (only `ts`), so a message Slack echoes back with
//! block kinds slack-morphism does not model cannot turn a posted answer into an error.

mod blocks;
mod errors;
mod files;
mod state;
mod stream;
#[cfg(test)]
mod testing;

use std::sync::Arc;
use std::time::Duration;

use anchorbot_platform::{
    AppendStream, Attachment, Author, FinalState, Limits, MessageRef, Platform, PlatformError,
    PriorMessage, ReplyTarget, Status,
};
use async_trait::async_trait;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request};
use serde::Deserialize;
use serde_json::{json, Value};
use slack_morphism::errors::{SlackClientError, SlackRateLimitError};
use url::Url;

use crate::client::Api;
use crate::markdown::{markdown_block, MARKDOWN_BLOCK_MAX};
use crate::pace;
use crate::rate::{self, Patience};
use crate::target::SlackTarget;
use crate::SlackConfig;

pub use blocks::{feedback_block, FEEDBACK_ACTION_ID, FEEDBACK_NEGATIVE, FEEDBACK_POSITIVE};
pub(crate) use errors::map_error;
pub use files::{token_allowed, FILE_HOST};
pub(crate) use files::{web_client, WebClient};

use blocks::{message_body, mrkdwn_text, title_of, truncate_chars};
use errors::{api_code, http_status_error};
use state::{writer, Sent, Shared};

/// At most one write per streamed message per this interval: `chat.update` is Tier 3
/// (about 50 a minute per workspace), shared by every answer in flight.
pub const MIN_EDIT_INTERVAL: Duration = Duration::from_secs(1);

/// The status shown in assistant threads while the model works.
const THINKING: &str = "is thinking…";
/// The reaction that says "working on it" outside assistant threads.
const WORKING_REACTION: &str = "eyes";
/// Characters of a progress status; Slack shows one short line.
const STATUS_CHARS: usize = 150;
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
        markdown_block::to_markdown_block(markdown)
    }

    fn render_stream(&self, markdown: &str) -> String {
        markdown_block::streamable(markdown)
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
        self.start_stream(to).await
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
        self.fetch_file(attachment, max_bytes).await
    }
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

#[cfg(test)]
mod tests {
    use anchorbot_platform::{Author, Status};
    use serde_json::{json, Value};

    use super::*;
    use crate::platform::testing::{
        body_of, methods, platform_at, serve, slack_target, target, web_api,
    };
    use anchorbot_platform::sync::lock;

    #[test]
    fn it_is_a_shareable_platform() {
        fn shareable<T: Platform + Clone + Send + Sync + 'static>() {}
        shareable::<SlackPlatform>();
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
}
