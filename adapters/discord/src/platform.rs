//! Outbound: [`DiscordPlatform`], the platform contract's [`Platform`] for Discord.
//!
//! - Replies are posted, then edited (Discord has no append stream): at most one edit per
//!   [`MIN_EDIT_INTERVAL`], split at 2,000 characters by the contract's [`StreamingReply`].
//!   Every posted piece carries a Stop button while the reply streams; when it ends, the
//!   buttons go, and a complete (or truncated) answer gets 👍/👎 on its last message.
//! - Status: typing in the reply's channel while the model thinks, renewed every 8 s until the
//!   first post or a clear; progress notes edit one status message, at most once per
//!   [`MIN_EDIT_INTERVAL`], and a clear deletes it.
//! - Rate limits are the REST layer's ([`crate::limits`]): a 429 holds its bucket (a global
//!   429 every route) in the shared budget, and later calls wait it out before they are sent,
//!   up to [`MAX_HOLD_WAIT`].
//! - Private answers through the interaction: an edit of `@original` after a slash command's
//!   deferral (a type 4 callback if it was not deferred), and an ephemeral follow-up after
//!   that, or after a button press (acknowledged with type 6).
//! - Attachments are downloaded without the token, only from Discord's CDN hosts or the host
//!   of `api_url`, never on a redirect, refused before download when Discord declared them too
//!   large and cut off while streaming when they grow past the limit.
//!
//! [`StreamingReply`]: anchorbot_platform::StreamingReply

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorbot_platform::download::read_capped;
use anchorbot_platform::{
    Attachment, Author, FinalState, Limits, MessageRef, Platform, PlatformError, PriorMessage,
    ReplyTarget, Status,
};
use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use url::Url;

use crate::inbound::snowflake;
use crate::rest::{feedback_row, no_pings, stop_row, Rest, CALLBACK_MESSAGE, EPHEMERAL};
use crate::target::DiscordTarget;
use crate::DiscordConfig;

/// Discord's message length, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2000;
/// Between two edits of a streamed message: edits share the channel's limit of about 5 per
/// 5 s with every other write there.
pub const MIN_EDIT_INTERVAL: Duration = Duration::from_millis(1100);
/// Discord's CDN hosts, where attachments live.
pub const CDN_HOSTS: [&str; 2] = ["cdn.discordapp.com", "media.discordapp.net"];
/// A typing indicator lasts 10 s; it is renewed before it runs out.
const TYPING_RENEW: Duration = Duration::from_secs(8);
/// Typing stops by itself after this long without a post, so a lost clear cannot type forever.
const TYPING_MAX: Duration = Duration::from_secs(600);
/// A whole attachment download, headers and body.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Messages one history page returns (Discord's maximum).
const HISTORY_PAGE: usize = 100;
/// How many progress messages and answered interactions are remembered.
const REMEMBERED: usize = 4096;
pub use crate::limits::MAX_HOLD_WAIT;
use anchorbot_platform::sync::lock;

/// Discord's outbound side. Cheap to clone; clones share their memory.
#[derive(Clone)]
pub struct DiscordPlatform {
    cfg: Arc<DiscordConfig>,
    rest: Rest,
    download: reqwest::Client,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DiscordPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordPlatform").finish_non_exhaustive()
    }
}

/// What the replies in flight share.
#[derive(Default)]
struct Shared {
    /// Typing loops, by channel.
    typing: Mutex<HashMap<String, JoinHandle<()>>>,
    /// The progress message of a reply and when it was last written, by (channel, message
    /// answered).
    progress: Mutex<Bounded<(String, String), (MessageRef, Instant)>>,
    /// Interactions that already had their one callback (or `@original` edit).
    answered: Mutex<Bounded<String, ()>>,
    /// The gateway session is up (READY or RESUMED seen, and no drop since).
    connected: std::sync::atomic::AtomicBool,
    /// Another replica of the bot holds the gateway; this one stands by.
    standby: std::sync::atomic::AtomicBool,
}

/// A map that forgets its oldest entries past [`REMEMBERED`].
struct Bounded<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K, V> Default for Bounded<K, V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V> Bounded<K, V> {
    fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            if self.order.len() > REMEMBERED {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    fn remove(&mut self, k: &K) -> Option<V> {
        let v = self.map.remove(k)?;
        // Else a later insert of `k` would be evicted with this entry's old place in line.
        if let Some(i) = self.order.iter().position(|o| o == k) {
            self.order.remove(i);
        }
        Some(v)
    }
}

impl DiscordPlatform {
    /// Records whether the gateway session is up (for readiness).
    pub(crate) fn set_connected(&self, up: bool) {
        self.shared
            .connected
            .store(up, std::sync::atomic::Ordering::SeqCst);
    }

    /// Records whether this replica stands by while another holds the gateway (readiness).
    pub(crate) fn set_standby(&self, standby: bool) {
        self.shared
            .standby
            .store(standby, std::sync::atomic::Ordering::SeqCst);
    }

    /// The platform for `cfg`, calling Discord through `rest`.
    pub fn new(cfg: DiscordConfig, rest: Rest, download: reqwest::Client) -> Self {
        Self {
            cfg: Arc::new(cfg),
            rest,
            download,
            shared: Arc::new(Shared::default()),
        }
    }

    /// Calls Discord (the REST layer waits out rate-limit holds first).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, PlatformError> {
        self.rest.call(method, path, body).await
    }

    /// Stops the typing loop in `channel`, if one runs.
    fn stop_typing(&self, channel: &str) {
        if let Some(handle) = lock(&self.shared.typing).remove(channel) {
            handle.abort();
        }
    }

    /// Starts typing in `channel`, renewed until stopped (or [`TYPING_MAX`]).
    fn start_typing(&self, channel: &str) {
        let mut typing = lock(&self.shared.typing);
        if typing.get(channel).is_some_and(|h| !h.is_finished()) {
            return;
        }
        let rest = self.rest.clone();
        let path = format!("/channels/{channel}/typing");
        let handle = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            while started.elapsed() < TYPING_MAX {
                let wait = match rest.call(Method::POST, &path, None).await {
                    Ok(_) => TYPING_RENEW,
                    Err(PlatformError::RateLimited { retry_after }) => retry_after,
                    Err(e) => {
                        tracing::debug!(error = %e, "typing indicator failed");
                        return;
                    }
                };
                tokio::time::sleep(wait).await;
            }
        });
        typing.insert(channel.to_string(), handle);
    }

    /// Sets a message's buttons (none for an empty list).
    async fn set_components(&self, m: &MessageRef, components: Value) -> Result<(), PlatformError> {
        let path = format!("/channels/{}/messages/{}", m.channel, m.id);
        self.call(
            Method::PATCH,
            &path,
            Some(&json!({ "components": components })),
        )
        .await
        .map(|_| ())
    }

    /// Posts `text` in `to`'s channel with `components`, replying to the message answered
    /// when the reply is not in a thread.
    async fn send(
        &self,
        to: &ReplyTarget,
        text: &str,
        components: Value,
    ) -> Result<MessageRef, PlatformError> {
        let mut body = json!({
            "content": clip(text),
            "allowed_mentions": no_pings(),
            "components": components,
        });
        if to.thread.is_none() {
            if let Some(id) = &to.message {
                body["message_reference"] =
                    json!({ "message_id": id, "fail_if_not_exists": false });
            }
        }
        let path = format!("/channels/{}/messages", to.channel);
        let posted = self.call(Method::POST, &path, Some(&body)).await?;
        let id = snowflake(&posted["id"])
            .ok_or_else(|| PlatformError::Transport("Discord's answer had no message id".into()))?;
        Ok(MessageRef {
            channel: to.channel.clone(),
            id: id.to_string(),
        })
    }

    /// Downloads `url`, refusing more than `max_bytes`.
    async fn download(&self, url: &Url, max_bytes: u64) -> Result<Vec<u8>, PlatformError> {
        let response = self.download.get(url.as_str()).send().await.map_err(|e| {
            PlatformError::Transport(format!("attachment download: {}", e.without_url()))
        })?;
        let status = response.status();
        if status.is_redirection() {
            return Err(PlatformError::Rejected(format!(
                "the file host answered {status} (a redirect), which is not followed"
            )));
        }
        if !status.is_success() {
            return Err(PlatformError::Rejected(format!(
                "the file host answered {status}"
            )));
        }
        let declared = response.content_length();
        read_capped(response.bytes_stream(), declared, max_bytes, |e| {
            PlatformError::Transport(format!("attachment download: {}", e.without_url()))
        })
        .await
    }
}

/// At most [`MAX_MESSAGE_CHARS`]: the splitter keeps replies within it, this keeps status
/// notes and command answers too.
fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text.to_string();
    }
    let mut s: String = text.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    s.push('…');
    s
}

/// Whether an attachment may be downloaded from `url`: over HTTPS from Discord's CDN hosts,
/// or from the origin (scheme, host and port) of `api_url`.
pub fn download_allowed(url: &Url, api_url: &str) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if url.scheme() == "https" && CDN_HOSTS.contains(&host) {
        return true;
    }
    let Ok(api) = Url::parse(api_url) else {
        return false;
    };
    api.host_str() == Some(host)
        && api.scheme() == url.scheme()
        && api.port_or_known_default() == url.port_or_known_default()
}

/// One message of a thread's history, as Discord lists it.
fn prior_message(m: &Value) -> Option<PriorMessage> {
    // Regular, reply and thread-starter messages; joins, pins and the like are not talk.
    let kind = m["type"].as_u64().unwrap_or(0);
    let m = match kind {
        0 | 19 => m,
        21 => m.get("referenced_message").filter(|r| r.is_object())?,
        _ => return None,
    };
    let author = &m["author"];
    let id = snowflake(&author["id"])
        .map(|i| i.to_string())
        .unwrap_or_default();
    let name = author["global_name"]
        .as_str()
        .or(author["username"].as_str())
        .unwrap_or(&id)
        .to_string();
    Some(PriorMessage {
        author: Author {
            id,
            display_name: name,
        },
        text: m["content"].as_str().unwrap_or_default().to_string(),
        from_bot: author["bot"].as_bool().unwrap_or(false),
        files: m["attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["filename"].as_str().map(str::to_string))
            .collect(),
    })
}

#[async_trait]
impl Platform for DiscordPlatform {
    fn connected(&self) -> bool {
        self.shared
            .connected
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn standby(&self) -> bool {
        self.shared
            .standby
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn limits(&self) -> Limits {
        Limits {
            max_message_chars: MAX_MESSAGE_CHARS,
            min_edit_interval: MIN_EDIT_INTERVAL,
        }
    }

    async fn post(&self, to: &ReplyTarget, text: &str) -> Result<MessageRef, PlatformError> {
        // The answer is visible now: typing would only linger for its last 10 s.
        self.stop_typing(&to.channel);
        self.send(to, text, stop_row()).await
    }

    async fn edit(&self, message: &MessageRef, text: &str) -> Result<(), PlatformError> {
        let path = format!("/channels/{}/messages/{}", message.channel, message.id);
        let body = json!({ "content": clip(text), "allowed_mentions": no_pings() });
        self.call(Method::PATCH, &path, Some(&body))
            .await
            .map(|_| ())
    }

    async fn delete(&self, message: &MessageRef) -> Result<(), PlatformError> {
        let path = format!("/channels/{}/messages/{}", message.channel, message.id);
        self.call(Method::DELETE, &path, None).await.map(|_| ())
    }

    async fn ephemeral(
        &self,
        to: &ReplyTarget,
        _user: &Author,
        text: &str,
    ) -> Result<(), PlatformError> {
        let Some(i) = DiscordTarget::of(to).interaction else {
            // Only interactions have private answers; elsewhere the note is a plain message.
            self.send(to, text, json!([])).await?;
            return Ok(());
        };
        let content = clip(text);
        let first = !i.acknowledged && lock(&self.shared.answered).get(&i.id).is_none();
        let (method, path, body) = if first && i.deferred {
            (
                Method::PATCH,
                format!("/webhooks/{}/{}/messages/@original", i.application, i.token),
                json!({ "content": content, "allowed_mentions": no_pings() }),
            )
        } else if first {
            (
                Method::POST,
                format!("/interactions/{}/{}/callback", i.id, i.token),
                json!({
                    "type": CALLBACK_MESSAGE,
                    "data": { "content": content, "flags": EPHEMERAL, "allowed_mentions": no_pings() },
                }),
            )
        } else {
            (
                Method::POST,
                format!("/webhooks/{}/{}", i.application, i.token),
                json!({ "content": content, "flags": EPHEMERAL, "allowed_mentions": no_pings() }),
            )
        };
        self.call(method, &path, Some(&body)).await?;
        lock(&self.shared.answered).insert(i.id, ());
        Ok(())
    }

    async fn status(&self, to: &ReplyTarget, status: &Status) -> Result<(), PlatformError> {
        // A status is cosmetic: failures are logged, never returned.
        let key = (to.channel.clone(), to.message.clone().unwrap_or_default());
        match status {
            Status::Thinking => self.start_typing(&to.channel),
            Status::Clear => {
                self.stop_typing(&to.channel);
                // The status message is an indicator like typing: it goes.
                let shown = lock(&self.shared.progress).remove(&key);
                if let Some((m, _)) = shown {
                    if let Err(e) = self.delete(&m).await {
                        tracing::debug!(error = %e, "status message not deleted");
                    }
                }
            }
            Status::Progress(note) => {
                let shown = lock(&self.shared.progress).get(&key).cloned();
                let result = match shown {
                    // Edits share the channel's rate limit: a note that comes too soon after
                    // the last one, or while the route is held, is skipped; a later one shows.
                    Some((_, at)) if at.elapsed() < MIN_EDIT_INTERVAL => Ok(()),
                    Some((m, _)) => {
                        let path = format!("/channels/{}/messages/{}", m.channel, m.id);
                        if self.rest.held(&Method::PATCH, &path).is_some() {
                            Ok(())
                        } else {
                            let body =
                                json!({ "content": clip(note), "allowed_mentions": no_pings() });
                            let r = self.call(Method::PATCH, &path, Some(&body)).await;
                            lock(&self.shared.progress).insert(key, (m, Instant::now()));
                            r.map(|_| ())
                        }
                    }
                    None => match self.send(to, note, json!([])).await {
                        Ok(m) => {
                            lock(&self.shared.progress).insert(key, (m, Instant::now()));
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "progress note failed");
                }
            }
        }
        Ok(())
    }

    async fn finished(
        &self,
        to: &ReplyTarget,
        state: &FinalState,
        messages: &[MessageRef],
    ) -> Result<(), PlatformError> {
        self.stop_typing(&to.channel);
        let answered = matches!(state, FinalState::Complete | FinalState::Truncated);
        let mut result = Ok(());
        for (i, m) in messages.iter().enumerate() {
            let last = i + 1 == messages.len();
            let components = if last && answered {
                feedback_row()
            } else {
                json!([])
            };
            let mut done = self.set_components(m, components.clone()).await;
            if matches!(done, Err(PlatformError::RateLimited { .. })) {
                // Sent again once the route's hold is over: a Stop button must not outlive
                // the reply.
                done = self.set_components(m, components).await;
            }
            if let Err(e) = done {
                tracing::debug!(error = %e, "buttons not updated");
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }

    /// The thread's messages before the one answered, oldest first: one page of up to 100,
    /// the newest `limit` of them.
    async fn history(
        &self,
        to: &ReplyTarget,
        limit: usize,
    ) -> Result<Vec<PriorMessage>, PlatformError> {
        let Some(thread) = &to.thread else {
            return Ok(Vec::new());
        };
        let mut path = format!(
            "/channels/{thread}/messages?limit={}",
            HISTORY_PAGE.min(limit.max(1))
        );
        if let Some(m) = &to.message {
            path.push_str(&format!("&before={m}"));
        }
        let page = self.call(Method::GET, &path, None).await?;
        let current = to.message.as_deref();
        let mut prior: Vec<PriorMessage> = page
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| snowflake(&m["id"]).map(|i| i.to_string()).as_deref() != current)
            .filter_map(prior_message)
            .collect();
        // Discord lists newest first.
        prior.reverse();
        if prior.len() > limit {
            prior.drain(..prior.len() - limit);
        }
        Ok(prior)
    }

    async fn fetch(
        &self,
        attachment: &Attachment,
        max_bytes: u64,
    ) -> Result<Vec<u8>, PlatformError> {
        if attachment.size > max_bytes {
            return Err(PlatformError::TooLarge {
                size: attachment.size,
                limit: max_bytes,
            });
        }
        let url = Url::parse(&attachment.locator)
            .map_err(|_| PlatformError::Rejected("the file's address is not a URL".into()))?;
        if !download_allowed(&url, &self.cfg.api_url) {
            return Err(PlatformError::Rejected(format!(
                "attachments are downloaded only from Discord's CDN or the API's host, not from {}",
                url.host_str().unwrap_or("an address without a host")
            )));
        }
        tokio::time::timeout(FETCH_TIMEOUT, self.download(&url, max_bytes))
            .await
            .map_err(|_| PlatformError::Transport("the attachment download timed out".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn platform() -> DiscordPlatform {
        let mut cfg = DiscordConfig::new(SecretString::from("t"));
        cfg.api_url = "http://127.0.0.1:9".into();
        let rest = Rest::new(&cfg).unwrap();
        DiscordPlatform::new(cfg, rest, Rest::downloader().unwrap())
    }

    #[test]
    fn downloads_go_only_to_discord_hosts() {
        let ok = |u: &str, api: &str| download_allowed(&Url::parse(u).unwrap(), api);
        assert!(ok(
            "https://cdn.discordapp.com/attachments/1/2/a.pdf?ex=1",
            "https://discord.com"
        ));
        assert!(ok(
            "https://media.discordapp.net/attachments/1/2/a.png",
            "https://discord.com"
        ));
        assert!(
            !ok("http://cdn.discordapp.com/a", "https://discord.com"),
            "plain HTTP to the CDN"
        );
        assert!(!ok("https://evil.example/a", "https://discord.com"));
        assert!(!ok(
            "https://cdn.discordapp.com.evil.example/a",
            "https://discord.com"
        ));
        assert!(ok(
            "http://127.0.0.1:9000/cdn/a.txt",
            "http://127.0.0.1:9000"
        ));
        assert!(
            !ok("http://127.0.0.1:9001/cdn/a.txt", "http://127.0.0.1:9000"),
            "another port"
        );
        assert!(ok("https://discord.com/x", "https://discord.com"));
    }

    #[tokio::test]
    async fn oversized_or_foreign_attachments_are_refused_before_any_request() {
        let p = platform();
        let big = Attachment {
            name: "big.pdf".into(),
            declared_mime: None,
            size: 11,
            locator: "https://cdn.discordapp.com/attachments/1/2/big.pdf".into(),
        };
        assert!(matches!(
            p.fetch(&big, 10).await,
            Err(PlatformError::TooLarge {
                size: 11,
                limit: 10
            })
        ));
        let foreign = Attachment {
            size: 1,
            locator: "https://example.com/a.pdf".into(),
            ..big
        };
        assert!(matches!(
            p.fetch(&foreign, 10).await,
            Err(PlatformError::Rejected(_))
        ));
    }

    #[test]
    fn history_reads_talk_and_thread_starters() {
        let user = json!({"id": "7", "username": "ann", "global_name": "Ann"});
        let talk = json!({"id": "1", "type": 0, "content": "hi", "author": user,
            "attachments": [{"filename": "a.txt"}]});
        let p = prior_message(&talk).unwrap();
        assert_eq!(
            (p.author.display_name.as_str(), p.text.as_str()),
            ("Ann", "hi")
        );
        assert_eq!(p.files, ["a.txt"]);
        let join = json!({"id": "2", "type": 7, "content": "", "author": user});
        assert!(prior_message(&join).is_none());
        let starter = json!({"id": "3", "type": 21, "content": "", "author": user,
            "referenced_message": {"id": "0", "type": 0, "content": "the question",
                "author": {"id": "8", "username": "bob", "bot": false}}});
        let p = prior_message(&starter).unwrap();
        assert_eq!(
            (p.author.display_name.as_str(), p.text.as_str()),
            ("bob", "the question")
        );
    }

    #[test]
    fn long_notes_are_clipped_to_one_message() {
        assert_eq!(clip(&"x".repeat(2500)).chars().count(), MAX_MESSAGE_CHARS);
        assert_eq!(clip("short"), "short");
    }
}
