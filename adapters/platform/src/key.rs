//! Conversation identity: platform, workspace or guild, channel and thread, with a stable
//! string form such as `slack:T1/C2/1712345678.000100`, `discord:G1/C2/T3` or `console:NAME`.
//!
//! The string form names every part by its position, one form per combination:
//!
//! | workspace | thread | form |
//! |---|---|---|
//! | none | none | `platform:channel` |
//! | some | none | `platform:workspace/channel` |
//! | some | some | `platform:workspace/channel/thread` |
//! | none | some | `platform:~/channel/thread` |
//!
//! `~` ([`NO_WORKSPACE`]) stands for "no workspace". No part may contain it (parts are
//! letters, digits, `.`, `-`, `_`, `@` and `+`), so it can never be a real workspace, and
//! `platform:channel/thread` is never printed: two parts always mean workspace and channel, as
//! they did before this form existed. [`FromStr`] accepts exactly the strings [`fmt::Display`]
//! prints, so a key and its string convert both ways without loss.
//!
//! Stored keys are unchanged by this form: every backend keys anchors and documents by this
//! string, and before this form no adapter built a key with a thread but no workspace (the
//! console, the only adapter then, has neither). So no stored string was printed by that
//! combination, every stored two-part key still parses as the workspace and channel it was
//! written for, and no migration was needed.

use std::fmt;
use std::str::FromStr;

/// Stands for the missing workspace of a key that has a thread, e.g. `discord:~/C2/T3`.
pub const NO_WORKSPACE: char = '~';

/// Identifies one conversation. A DM is a channel; with no thread, the conversation is the
/// channel itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationKey {
    platform: String,
    workspace: Option<String>,
    channel: String,
    thread: Option<String>,
}

/// A key or key part that cannot be represented in the stable string form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A part is empty or holds a separator (`:`, `/`) or whitespace.
    #[error("invalid conversation key part {part:?}: use letters, digits, '.', '-', '_' or '@'")]
    InvalidPart {
        /// The offending part.
        part: String,
    },
    /// The string has no `platform:` prefix, too many `/` parts, or `~` where no form has it.
    #[error(
        "invalid conversation key {0:?}: expected platform:channel, platform:workspace/channel, \
         platform:workspace/channel/thread or platform:~/channel/thread"
    )]
    Malformed(String),
}

/// Accepts a part that can stand between separators: 1 to 128 bytes of letters, digits,
/// `.`, `-`, `_`, `@` or `+`. Separators (`:`, `/`) and [`NO_WORKSPACE`] are refused.
fn check(part: &str) -> Result<(), KeyError> {
    let ok = !part.is_empty()
        && part.len() <= 128
        && part
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | '+'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::InvalidPart {
            part: part.to_string(),
        })
    }
}

impl ConversationKey {
    /// Builds a key, validating every part.
    pub fn new(
        platform: &str,
        workspace: Option<&str>,
        channel: &str,
        thread: Option<&str>,
    ) -> Result<Self, KeyError> {
        check(platform)?;
        check(channel)?;
        if let Some(w) = workspace {
            check(w)?;
        }
        if let Some(t) = thread {
            check(t)?;
        }
        Ok(Self {
            platform: platform.to_string(),
            workspace: workspace.map(str::to_string),
            channel: channel.to_string(),
            thread: thread.map(str::to_string),
        })
    }

    /// The local console conversation called `name`.
    pub fn console(name: &str) -> Result<Self, KeyError> {
        Self::new("console", None, name, None)
    }

    /// Platform name, e.g. `slack`.
    pub fn platform(&self) -> &str {
        &self.platform
    }

    /// Workspace (Slack team) or guild, if any.
    pub fn workspace(&self) -> Option<&str> {
        self.workspace.as_deref()
    }

    /// Channel id (a DM is a channel).
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Thread id, if the conversation is a thread.
    pub fn thread(&self) -> Option<&str> {
        self.thread.as_deref()
    }
}

impl fmt::Display for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p, c) = (&self.platform, &self.channel);
        match (&self.workspace, &self.thread) {
            (None, None) => write!(f, "{p}:{c}"),
            (Some(w), None) => write!(f, "{p}:{w}/{c}"),
            (Some(w), Some(t)) => write!(f, "{p}:{w}/{c}/{t}"),
            // Without the marker this would print as `p:c/t`, the form of workspace `c` and
            // channel `t`, and the two conversations would share one anchor.
            (None, Some(t)) => write!(f, "{p}:{NO_WORKSPACE}/{c}/{t}"),
        }
    }
}

/// Written as its text (`slack:T1/C2/1712345678.000100`), so a journaled event reads back.
impl serde::Serialize for ConversationKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ConversationKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for ConversationKey {
    type Err = KeyError;

    /// Parses the stable form (see the module doc). With two parts after the platform, they
    /// are workspace and channel; three add the thread, and a first part of `~` means no
    /// workspace. A single part is a channel (console names, DMs).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || KeyError::Malformed(s.to_string());
        let (platform, rest) = s.split_once(':').ok_or_else(malformed)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [w, c, t] if w.chars().eq([NO_WORKSPACE]) => Self::new(platform, None, c, Some(t)),
            // Only a key with a thread and no workspace prints the marker, and only first.
            _ if rest.contains(NO_WORKSPACE) => Err(malformed()),
            [c] => Self::new(platform, None, c, None),
            [w, c] => Self::new(platform, Some(w), c, None),
            [w, c, t] => Self::new(platform, Some(w), c, Some(t)),
            _ => Err(malformed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_forms_round_trip() {
        for s in [
            "slack:T1/C2/1712345678.000100",
            "slack:T1/D42",
            "discord:G1/C2/T3",
            "discord:@me/C9",
            "console:default",
        ] {
            let k: ConversationKey = s.parse().unwrap();
            assert_eq!(k.to_string(), s);
        }
        let k: ConversationKey = "slack:T1/C2/1712345678.000100".parse().unwrap();
        assert_eq!(k.platform(), "slack");
        assert_eq!(k.workspace(), Some("T1"));
        assert_eq!(k.channel(), "C2");
        assert_eq!(k.thread(), Some("1712345678.000100"));
    }

    #[test]
    fn rejects_separators_and_empty_parts() {
        assert!(ConversationKey::console("a/b").is_err());
        assert!(ConversationKey::console("").is_err());
        assert!(ConversationKey::console("has space").is_err());
        assert!("noplatform".parse::<ConversationKey>().is_err());
        assert!("x:a/b/c/d".parse::<ConversationKey>().is_err());
        assert!("x:a//c".parse::<ConversationKey>().is_err());
    }

    #[test]
    fn thread_without_workspace_differs_from_workspace_and_channel() {
        // These two printed as `discord:C2/T3` and shared one anchor and document prefix.
        let thread = ConversationKey::new("discord", None, "C2", Some("T3")).unwrap();
        let channel = ConversationKey::new("discord", Some("C2"), "T3", None).unwrap();
        assert_eq!(thread.to_string(), "discord:~/C2/T3");
        assert_eq!(channel.to_string(), "discord:C2/T3");
        assert_eq!(
            "discord:~/C2/T3".parse::<ConversationKey>(),
            Ok(thread.clone())
        );
        assert_eq!(
            "discord:C2/T3".parse::<ConversationKey>(),
            Ok(channel.clone())
        );
        let parsed: ConversationKey = "discord:~/C2/T3".parse().unwrap();
        assert_eq!(parsed.workspace(), None);
        assert_eq!(parsed.channel(), "C2");
        assert_eq!(parsed.thread(), Some("T3"));
    }

    #[test]
    fn the_marker_is_no_part_and_only_starts_a_threaded_key() {
        assert!(ConversationKey::new("x", Some("~"), "c", None).is_err());
        assert!(ConversationKey::new("x", None, "a~b", None).is_err());
        for s in [
            "x:~",
            "x:~/c",
            "x:a/~/t",
            "x:a/c/~",
            "x:~a/c/t",
            "x:~/c/t/u",
        ] {
            assert_eq!(
                s.parse::<ConversationKey>(),
                Err(KeyError::Malformed(s.into())),
                "{s}"
            );
        }
        assert!("x:~/~/t".parse::<ConversationKey>().is_err());
        assert_eq!(
            "~:c".parse::<ConversationKey>(),
            Err(KeyError::InvalidPart { part: "~".into() })
        );
    }

    #[test]
    fn channel_without_thread_differs_from_thread() {
        let chan = ConversationKey::new("slack", Some("T1"), "C2", None).unwrap();
        let thread = ConversationKey::new("slack", Some("T1"), "C2", Some("1.2")).unwrap();
        assert_ne!(chan, thread);
        assert_ne!(chan.to_string(), thread.to_string());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;

    /// Characters a part may hold, non-ASCII letters and digits included.
    const PART_CHARS: &[char] = &[
        'a', 'b', 'z', 'A', 'T', 'Z', '0', '1', '9', '.', '-', '_', '@', '+', 'é', 'ß', '中', '٣',
    ];

    /// Any valid part, up to the 128-byte limit.
    fn part() -> BoxedStrategy<String> {
        proptest::collection::vec(select(PART_CHARS), 1..40)
            .prop_map(|cs| cs.into_iter().collect::<String>())
            .prop_filter("within the byte limit", |p| p.len() <= 128)
            .boxed()
    }

    /// A part from a pool so small that two keys often share parts in swapped places.
    fn pooled_part() -> BoxedStrategy<String> {
        select(&["a", "b"][..]).prop_map(str::to_string).boxed()
    }

    /// A key from `part`, with each of the four workspace/thread combinations.
    fn key(part: BoxedStrategy<String>) -> impl Strategy<Value = ConversationKey> {
        (
            part.clone(),
            proptest::option::of(part.clone()),
            part.clone(),
            proptest::option::of(part),
        )
            .prop_map(|(p, w, c, t)| {
                ConversationKey::new(&p, w.as_deref(), &c, t.as_deref())
                    .expect("strategy yields valid parts")
            })
    }

    proptest! {
        #[test]
        fn display_then_parse_gives_the_same_key(k in key(part())) {
            let s = k.to_string();
            prop_assert_eq!(s.parse::<ConversationKey>(), Ok(k));
        }

        #[test]
        fn distinct_keys_print_distinctly(a in key(pooled_part()), b in key(pooled_part())) {
            prop_assert_eq!(a == b, a.to_string() == b.to_string());
        }

        #[test]
        fn distinct_arbitrary_keys_print_distinctly(a in key(part()), b in key(part())) {
            prop_assert_eq!(a == b, a.to_string() == b.to_string());
        }

        /// Every accepted string is the one its key prints, so no two strings name one key.
        #[test]
        fn only_the_printed_form_parses(
            s in proptest::collection::vec(select(&['a', 'b', ':', '/', '~', ' ', '.'][..]), 0..12)
                .prop_map(|cs| cs.into_iter().collect::<String>())
        ) {
            if let Ok(k) = s.parse::<ConversationKey>() {
                prop_assert_eq!(k.to_string(), s);
            }
        }
    }
}
