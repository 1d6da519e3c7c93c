//! Conversation identity: platform, workspace or guild, channel and thread, with a stable
//! string form such as `slack:T1/C2/1712345678.000100`, `discord:G1/C2/T3` or `console:NAME`.

use std::fmt;
use std::str::FromStr;

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
    /// The string has no `platform:` prefix or too many `/` parts.
    #[error("invalid conversation key {0:?}: expected platform:[workspace/]channel[/thread]")]
    Malformed(String),
}

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
        write!(f, "{}:", self.platform)?;
        if let Some(w) = &self.workspace {
            write!(f, "{w}/")?;
        }
        write!(f, "{}", self.channel)?;
        if let Some(t) = &self.thread {
            write!(f, "/{t}")?;
        }
        Ok(())
    }
}

impl FromStr for ConversationKey {
    type Err = KeyError;

    /// Parses the stable form. With two parts after the platform, they are workspace and
    /// channel; three add the thread. A single part is a channel (console names, DMs).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (platform, rest) = s
            .split_once(':')
            .ok_or_else(|| KeyError::Malformed(s.to_string()))?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [c] => Self::new(platform, None, c, None),
            [w, c] => Self::new(platform, Some(w), c, None),
            [w, c, t] => Self::new(platform, Some(w), c, Some(t)),
            _ => Err(KeyError::Malformed(s.to_string())),
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
    fn channel_without_thread_differs_from_thread() {
        let chan = ConversationKey::new("slack", Some("T1"), "C2", None).unwrap();
        let thread = ConversationKey::new("slack", Some("T1"), "C2", Some("1.2")).unwrap();
        assert_ne!(chan, thread);
        assert_ne!(chan.to_string(), thread.to_string());
    }
}
