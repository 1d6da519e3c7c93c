//! The commands every adapter shares. The engine parses them, from typed text (`/status`) or
//! from a platform's native command invocation.
//!
//! None of the commands takes arguments, so typed text is a command only when it is the slash
//! word alone: `/clear the cache how?` is a question, never a destructive command.

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
    /// A native command invoked with arguments it does not take; nothing is done.
    TakesNoArguments(String),
    /// Any other slash word on its own.
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
    /// Parses a native command invocation: its name (without the slash) and its arguments.
    /// The platform marked it as a command, so it is one; but arguments are refused rather
    /// than ignored, so `/clear everything but the files` clears nothing.
    pub fn from_name(name: &str, args: &str) -> Self {
        let cmd = Self::named(name);
        if !args.trim().is_empty() && !matches!(cmd, Command::Unknown(_) | Command::Help) {
            return Command::TakesNoArguments(name.to_ascii_lowercase());
        }
        cmd
    }

    fn named(name: &str) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "clear" | "reset" => Command::Clear,
            "files" | "docs" => Command::Files,
            "status" => Command::Status,
            "help" | "?" => Command::Help,
            other => Command::Unknown(other.to_string()),
        }
    }

    /// Parses typed text; `None` if it is not a command. Only a slash word alone is a
    /// command: with more text after it, or with a second slash (`/usr/bin`), it is a message.
    pub fn parse(text: &str) -> Option<Self> {
        let name = text.trim().strip_prefix('/')?;
        if name.is_empty() || name.contains('/') || name.contains(char::is_whitespace) {
            return None;
        }
        Some(Self::named(name))
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
        assert_eq!(Command::parse("/files now"), None);
        assert_eq!(Command::parse("/clear the cache how?"), None);
        assert_eq!(Command::parse("/clear\nthen what"), None);
        assert_eq!(
            Command::from_name("clear", "the cache"),
            Command::TakesNoArguments("clear".into())
        );
        assert_eq!(Command::from_name("CLEAR", ""), Command::Clear);
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
