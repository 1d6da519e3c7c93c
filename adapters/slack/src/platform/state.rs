//! The per-message state cache: what [`super::SlackPlatform`] remembers across replies (the
//! workspaces and channels without streaming, the messages it wrote and their open streams,
//! the statuses showing, the threads titled), in maps that forget their oldest entries.

use std::collections::HashSet;
use std::sync::Mutex;

use anchorbot_platform::{BoundedMap, MessageRef, ReplyTarget};

use crate::pace::Writers;
use anchorbot_platform::sync::lock;

/// How many posted messages, titled threads and shown statuses are remembered. Old entries
/// are forgotten first; forgetting one only costs feedback buttons or a title.
const REMEMBERED: usize = 4096;

/// What is remembered of a message the adapter wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sent {
    /// The answer text (Markdown) it shows, for `chat.update` with the feedback buttons.
    text: String,
    /// The thread it is in, to find a reply's streams.
    thread: Option<String>,
    /// The workspace of a native stream that is still open; `None` once stopped or for a
    /// posted message.
    open_stream: Option<String>,
}

impl Sent {
    pub(super) fn posted(text: &str, to: &ReplyTarget) -> Self {
        Self {
            text: text.to_string(),
            thread: to.thread.clone(),
            open_stream: None,
        }
    }

    pub(super) fn streaming(to: &ReplyTarget, team: &str) -> Self {
        Self {
            text: String::new(),
            thread: to.thread.clone(),
            open_stream: Some(team.to_string()),
        }
    }
}

/// Memory shared by every reply of one [`SlackPlatform`].
pub(super) struct Shared {
    /// Workspaces without native streaming: they get post plus update.
    no_stream: Mutex<HashSet<String>>,
    /// Channels whose kind takes no streams.
    no_stream_channels: Mutex<HashSet<String>>,
    /// The replies writing lately, for their write interval.
    pub(super) writers: Writers,
    /// Messages written, by (channel, ts).
    sent: Mutex<BoundedMap<(String, String), Sent>>,
    /// Statuses showing, by (channel, thread) or (channel, message).
    statuses: Mutex<BoundedMap<(String, String), ()>>,
    /// Assistant threads titled, by (channel, thread).
    titled: Mutex<BoundedMap<(String, String), ()>>,
    /// Events are being received (Socket Mode started, or the HTTP endpoint listening).
    pub(super) connected: std::sync::atomic::AtomicBool,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            no_stream: Mutex::default(),
            no_stream_channels: Mutex::default(),
            writers: Writers::default(),
            sent: Mutex::new(BoundedMap::new(REMEMBERED)),
            statuses: Mutex::new(BoundedMap::new(REMEMBERED)),
            titled: Mutex::new(BoundedMap::new(REMEMBERED)),
            connected: std::sync::atomic::AtomicBool::default(),
        }
    }
}

impl Shared {
    pub(super) fn streaming_off(&self, team: &str) -> bool {
        lock(&self.no_stream).contains(team)
    }

    pub(super) fn turn_streaming_off(&self, team: &str) {
        lock(&self.no_stream).insert(team.to_string());
    }

    pub(super) fn channel_streaming_off(&self, channel: &str) -> bool {
        lock(&self.no_stream_channels).contains(channel)
    }

    pub(super) fn turn_channel_streaming_off(&self, channel: &str) {
        lock(&self.no_stream_channels).insert(channel.to_string());
    }

    pub(super) fn remember(&self, m: &MessageRef, sent: Sent) {
        lock(&self.sent).insert(key(m), sent);
    }

    pub(super) fn forget(&self, m: &MessageRef) {
        lock(&self.sent).remove(&key(m));
    }

    pub(super) fn set_text(&self, m: &MessageRef, text: &str) {
        if let Some(sent) = lock(&self.sent).get_mut(&key(m)) {
            sent.text = text.to_string();
        }
    }

    pub(super) fn append_text(&self, m: &MessageRef, text: &str) {
        if let Some(sent) = lock(&self.sent).get_mut(&key(m)) {
            sent.text.push_str(text);
        }
    }

    pub(super) fn text_of(&self, channel: &str, ts: &str) -> Option<String> {
        lock(&self.sent)
            .get(&(channel.to_string(), ts.to_string()))
            .map(|s| s.text.clone())
    }

    /// The workspace of message `channel`/`ts` if it is a native stream still open.
    pub(super) fn open_stream_team(&self, channel: &str, ts: &str) -> Option<String> {
        lock(&self.sent)
            .get(&(channel.to_string(), ts.to_string()))
            .and_then(|s| s.open_stream.clone())
    }

    pub(super) fn is_open_stream(&self, channel: &str, ts: &str) -> bool {
        self.open_stream_team(channel, ts).is_some()
    }

    pub(super) fn stream_stopped(&self, channel: &str, ts: &str) {
        if let Some(sent) = lock(&self.sent).get_mut(&(channel.to_string(), ts.to_string())) {
            sent.open_stream = None;
        }
    }

    /// The open streams in `channel`'s `thread`, as (channel, ts).
    pub(super) fn open_streams_in(
        &self,
        channel: &str,
        thread: Option<&str>,
    ) -> Vec<(String, String)> {
        lock(&self.sent)
            .iter()
            .filter(|((c, _), s)| {
                c == channel && s.open_stream.is_some() && s.thread.as_deref() == thread
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub(super) fn status_shown(&self, key: &(String, String)) -> bool {
        lock(&self.statuses).get(key).is_some()
    }

    pub(super) fn set_status_shown(&self, key: (String, String), shown: bool) {
        let mut statuses = lock(&self.statuses);
        if shown {
            statuses.insert(key, ());
        } else {
            statuses.remove(&key);
        }
    }

    /// Records that the thread is titled; false if it already was.
    pub(super) fn mark_titled(&self, channel: &str, thread: &str) -> bool {
        let mut titled = lock(&self.titled);
        let key = (channel.to_string(), thread.to_string());
        if titled.get(&key).is_some() {
            return false;
        }
        titled.insert(key, ());
        true
    }
}

fn key(m: &MessageRef) -> (String, String) {
    (m.channel.clone(), m.id.clone())
}

/// A message's name among the writers ([`Writers`]).
pub(super) fn writer(m: &MessageRef) -> String {
    format!("{}:{}", m.channel, m.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::testing::{slack_target, target};

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
}
