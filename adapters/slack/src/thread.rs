//! Reading a thread back from Slack, for joining a discussion ([`history`]) and for knowing,
//! after a restart, whether the bot already took part in one (`inbound`).
//!
//! - `conversations.replies` is form-encoded only in Slack's Web API spec, so it goes as a GET
//!   with query parameters, as the official SDKs call it; Slack does not read a JSON body's
//!   arguments for it.
//! - Slack pages a thread oldest first and forward only (`response_metadata.next_cursor`), so
//!   the newest messages of a long thread are on its last page. The reader follows the cursor
//!   up to [`MAX_PAGES`] pages of [`PAGE_SIZE`] and spends the workspace's
//!   `conversations.replies` budget (Tier 3, [`crate::rate`]) for each page.
//! - The bot's own earlier answers are read from their `markdown` blocks: their `text` is only
//!   the notification fallback, cut at 280 characters.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use anchorbot_platform::{Author, PriorMessage};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use slack_morphism::errors::SlackClientError;

use crate::client::Api;
use crate::rate::{self, Patience};
use crate::users::unnamed;

/// Messages asked for per page: Slack recommends no more than 200.
pub const PAGE_SIZE: u32 = 200;
/// Pages read at most, 2,000 messages: a thread longer than that is read from its first 2,000
/// (and the newest of those kept). Ten pages are a fifth of the workspace's minute of
/// `conversations.replies` (Tier 3), so joining one long thread cannot starve the others.
pub const MAX_PAGES: usize = 10;
/// People named per thread read at most: half of `users.info`'s minute (Tier 4), so a crowded
/// thread cannot spend it all; the rest appear as `<@U…>`.
const MAX_NAMED: usize = 50;
/// `users.info` look-ups in flight at once while naming a thread's people.
const NAMING_AT_ONCE: usize = 8;
/// The longest a page waits for the budget; past it the read stops with what it has.
const MAX_BUDGET_WAIT: Duration = Duration::from_secs(10);
/// The Web API method.
const METHOD: &str = "conversations.replies";
/// Tries of one page: a 429 is waited out once (within [`MAX_BUDGET_WAIT`]), then the read
/// gives up.
const ATTEMPTS: u32 = 2;
/// How a page meets a spent allowance or a 429's hold: it waits, within [`MAX_BUDGET_WAIT`].
const PATIENCE: Patience = Patience::Wait(MAX_BUDGET_WAIT);

/// One page of `conversations.replies`, read leniently: only what the readers use.
#[derive(Debug, Deserialize)]
struct Page {
    /// The thread's messages on this page, oldest first (the parent first on the first page).
    #[serde(default)]
    messages: Vec<RawMessage>,
    /// The cursor of the next page (`""` on the last).
    #[serde(default)]
    response_metadata: Option<Metadata>,
}

/// A page's `response_metadata`.
#[derive(Debug, Deserialize)]
struct Metadata {
    /// The cursor of the next page.
    #[serde(default)]
    next_cursor: Option<String>,
}

/// One message as Slack returns it.
#[derive(Debug, Deserialize)]
struct RawMessage {
    /// Its timestamp, its id.
    ts: String,
    /// The author's user id (the bot's own messages carry the bot user too).
    user: Option<String>,
    /// Set on messages an app or bot posted.
    bot_id: Option<String>,
    /// A bot message's display name, for bots without a user.
    username: Option<String>,
    /// The text, or for messages with blocks the notification fallback.
    text: Option<String>,
    /// Block Kit blocks, kept as JSON: only `markdown` blocks are read.
    blocks: Option<Vec<Value>>,
    /// Files shared with it.
    files: Option<Vec<RawFile>>,
}

/// A file shared in a thread message.
#[derive(Debug, Deserialize)]
struct RawFile {
    /// Its name.
    name: Option<String>,
}

/// A thread message as the readers use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadMessage {
    /// Its timestamp.
    pub ts: String,
    /// The author's user id.
    pub user: Option<String>,
    /// Set on messages an app or bot posted.
    pub bot_id: Option<String>,
    /// A bot's name when it has no user.
    pub username: Option<String>,
    /// The whole text: the `markdown` blocks when there are any, else `text`.
    pub text: String,
    /// Names of the files shared with it.
    pub files: Vec<String>,
}

impl From<RawMessage> for ThreadMessage {
    fn from(m: RawMessage) -> Self {
        let text = markdown_of(m.blocks.as_deref().unwrap_or_default())
            .unwrap_or_else(|| m.text.unwrap_or_default());
        Self {
            ts: m.ts,
            user: m.user,
            bot_id: m.bot_id,
            username: m.username,
            text,
            files: m
                .files
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.name)
                .collect(),
        }
    }
}

/// The text of a message's `markdown` blocks, one paragraph each; `None` when it has none.
/// The adapter posts answers in one (with a 280-character fallback in `text`).
fn markdown_of(blocks: &[Value]) -> Option<String> {
    let parts: Vec<&str> = blocks
        .iter()
        .filter(|b| b["type"] == "markdown")
        .filter_map(|b| b["text"].as_str())
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}

/// Why a thread could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The workspace's `conversations.replies` budget is spent (or held by a 429) for longer
    /// than a read waits.
    #[error("the conversations.replies budget is spent for {0:?}")]
    Budget(Duration),
    /// Slack answered with an error.
    #[error(transparent)]
    Slack(#[from] SlackClientError),
}

/// Reads a thread page by page, oldest first.
pub struct Pager<'a> {
    /// The Web API and the shared rate budget.
    api: &'a Api,
    /// The thread's channel.
    channel: String,
    /// The thread's root `ts`.
    root: String,
    /// The next page's cursor; `None` before the first page.
    cursor: Option<String>,
    /// Pages read.
    pages: usize,
    /// The last page was read.
    done: bool,
    /// Timestamps already returned (a page may repeat the parent).
    seen: HashSet<String>,
}

impl<'a> Pager<'a> {
    /// A reader of thread `channel`/`root`.
    pub fn new(api: &'a Api, channel: &str, root: &str) -> Self {
        Self {
            api,
            channel: channel.to_string(),
            root: root.to_string(),
            cursor: None,
            pages: 0,
            done: false,
            seen: HashSet::new(),
        }
    }

    /// Whether reading stopped at [`MAX_PAGES`] with more of the thread left.
    pub fn capped(&self) -> bool {
        !self.done && self.pages >= MAX_PAGES
    }

    /// The next page's messages, oldest first; `None` after the last page or at the cap.
    pub async fn next(&mut self) -> Result<Option<Vec<ThreadMessage>>, ReadError> {
        if self.done || self.pages >= MAX_PAGES {
            return Ok(None);
        }
        let mut attempts = 0;
        let page = loop {
            attempts += 1;
            // Takes the page's allowance, waiting out a hold another conversation's 429 left,
            // within the read's patience.
            rate::before_call(self.api, METHOD, None, PATIENCE)
                .await
                .map_err(ReadError::Budget)?;
            match self.fetch().await {
                Ok(page) => break page,
                Err(SlackClientError::RateLimitError(r)) => {
                    // Held for every conversation, not only this read.
                    let wait = rate::after_429(self.api, METHOD, None, r.retry_after, PATIENCE);
                    if attempts >= ATTEMPTS {
                        return Err(ReadError::Budget(wait));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.pages += 1;
        let next = page
            .response_metadata
            .and_then(|m| m.next_cursor)
            .filter(|c| !c.is_empty());
        self.done = next.is_none();
        self.cursor = next;
        let messages = page
            .messages
            .into_iter()
            .filter(|m| self.seen.insert(m.ts.clone()))
            .map(ThreadMessage::from)
            .collect();
        Ok(Some(messages))
    }

    /// One GET of the next page, counted in `/metrics`.
    async fn fetch(&self) -> Result<Page, SlackClientError> {
        let limit = PAGE_SIZE.to_string();
        let params = vec![
            ("channel", Some(self.channel.as_str())),
            ("ts", Some(self.root.as_str())),
            ("limit", Some(limit.as_str())),
            ("cursor", self.cursor.as_deref()),
        ];
        anchorbot_platform::metrics::api_call(rate::PLATFORM, METHOD);
        let session = self.api.session();
        let result = session
            .http_session_api
            .http_get(METHOD, &params, None)
            .await;
        if result.is_err() {
            anchorbot_platform::metrics::api_error(rate::PLATFORM, METHOD);
        }
        result
    }
}

/// The thread `channel`/`root`'s messages before the one being answered (`current`), oldest
/// first: the newest `limit` of them, their authors named.
pub async fn history(
    api: &Api,
    channel: &str,
    root: &str,
    current: Option<&str>,
    limit: usize,
) -> Result<Vec<PriorMessage>, ReadError> {
    let mut pager = Pager::new(api, channel, root);
    let mut kept: VecDeque<ThreadMessage> = VecDeque::new();
    loop {
        let page = match pager.next().await {
            Ok(Some(page)) => page,
            Ok(None) => break,
            // Without a page there is nothing to seed with; later pages are a bonus.
            Err(e) if pager.pages == 0 => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, pages = pager.pages, "thread read stopped early; seeding with what was read");
                break;
            }
        };
        for m in page {
            if Some(m.ts.as_str()) == current {
                continue;
            }
            kept.push_back(m);
            if kept.len() > limit {
                kept.pop_front();
            }
        }
    }
    if pager.capped() {
        tracing::warn!(
            pages = MAX_PAGES,
            "the thread is longer than the pages read; seeded with the newest of its first {} messages",
            MAX_PAGES * PAGE_SIZE as usize
        );
    }
    let names = name_people(api, &kept).await;
    let mut prior = Vec::with_capacity(kept.len());
    for m in kept {
        let author = match (&m.user, &m.username) {
            (Some(user), _) => Author {
                id: user.clone(),
                display_name: names.get(user).cloned().unwrap_or_else(|| unnamed(user)),
            },
            (None, Some(name)) => Author {
                id: m.bot_id.clone().unwrap_or_default(),
                display_name: name.clone(),
            },
            (None, None) => Author {
                id: m.bot_id.clone().unwrap_or_default(),
                display_name: "a bot".into(),
            },
        };
        prior.push(PriorMessage {
            author,
            text: m.text,
            from_bot: m.bot_id.is_some(),
            files: m.files,
        });
    }
    Ok(prior)
}

/// The names of the people who wrote `messages`, the newest writers first, at most
/// [`MAX_NAMED`] of them, [`NAMING_AT_ONCE`] look-ups at a time (each cached, so a thread's
/// regulars cost nothing the next time).
async fn name_people(api: &Api, messages: &VecDeque<ThreadMessage>) -> HashMap<String, String> {
    let mut people: Vec<String> = Vec::new();
    for user in messages.iter().rev().filter_map(|m| m.user.as_ref()) {
        if people.len() == MAX_NAMED {
            break;
        }
        if !people.contains(user) {
            people.push(user.clone());
        }
    }
    futures_util::stream::iter(people)
        .map(|user| async move {
            let name = api.names.name(api, &user).await;
            (user, name)
        })
        .buffer_unordered(NAMING_AT_ONCE)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_answer_is_read_from_its_markdown_blocks_not_the_fallback() {
        let raw: RawMessage = serde_json::from_value(json!({
            "ts": "2.0", "user": "UBOT", "bot_id": "BBOT",
            "text": "*Short* fallback…",
            "blocks": [
                {"type": "markdown", "text": "**Short** fallback and the whole answer"},
                {"type": "context_actions", "elements": []}
            ]
        }))
        .expect("a message");
        let m = ThreadMessage::from(raw);
        assert_eq!(m.text, "**Short** fallback and the whole answer");
        let plain: RawMessage =
            serde_json::from_value(json!({"ts": "3.0", "user": "U1", "text": "hi",
                "blocks": [{"type": "rich_text", "elements": []}]}))
            .expect("a message");
        assert_eq!(ThreadMessage::from(plain).text, "hi");
    }
}
