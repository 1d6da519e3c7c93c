//! The commands every adapter shares. The engine parses them, from typed text (`/status`) or
//! from a platform's native command invocation.

use anchorbot_platform::CommandSpec;

/// A command the engine understands: a closed set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Delete the conversation's documents and reset its anchor.
    Clear,
    /// List the conversation's documents.
    Files,
    /// Show the anchor and token-budget use.
    Status,
    /// List the commands.
    Help,
    /// Anything else that starts with a slash.
    Unknown(String),
}

/// The commands, for `/help` and for adapters that register native commands.
pub const SPECS: &[CommandSpec] = &[
    CommandSpec {
        name: "clear",
        description: "Delete this conversation's documents and reset its memory",
        argument: None,
    },
    CommandSpec {
        name: "files",
        description: "List the documents shared in this conversation",
        argument: None,
    },
    CommandSpec {
        name: "status",
        description: "Show this conversation's memory: turns, summaries, facts, documents, budget",
        argument: None,
    },
    CommandSpec {
        name: "help",
        description: "List the commands",
        argument: None,
    },
];

impl Command {
    /// Parses a command name (without the slash) and its arguments.
    pub fn from_name(name: &str, _args: &str) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "clear" | "reset" => Command::Clear,
            "files" | "docs" => Command::Files,
            "status" => Command::Status,
            "help" | "?" => Command::Help,
            other => Command::Unknown(other.to_string()),
        }
    }

    /// Parses typed text; `None` if it is not a command. A path-like `/usr/bin` question is
    /// not a command only when it has a second slash before any space.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        let rest = t.strip_prefix('/')?;
        let (name, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        if name.is_empty() || name.contains('/') {
            return None;
        }
        Some(Self::from_name(name, args.trim()))
    }
}

/// The `/help` text.
pub fn help_text() -> String {
    let mut s = String::from("Commands:\n");
    for c in SPECS {
        s.push_str(&format!("  /{:<8} {}\n", c.name, c.description));
    }
    s.push_str("Anything else is a message to the bot.");
    s
}

/// `n` with its noun in the right number: "1 page", "3 pages", "0 summaries".
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_leaves_messages_alone() {
        assert_eq!(Command::parse("/clear"), Some(Command::Clear));
        assert_eq!(Command::parse("  /STATUS  "), Some(Command::Status));
        assert_eq!(Command::parse("/files now"), Some(Command::Files));
        assert_eq!(
            Command::parse("/frobnicate"),
            Some(Command::Unknown("frobnicate".into()))
        );
        assert_eq!(Command::parse("hello /clear"), None);
        assert_eq!(Command::parse("/usr/bin is where?"), None);
        assert_eq!(Command::parse("/"), None);
    }

    #[test]
    fn help_lists_every_command() {
        let h = help_text();
        for c in SPECS {
            assert!(h.contains(&format!("/{}", c.name)));
        }
    }
}
