//! The Discord adapter's part of anchorbot's settings (`[discord]` in the TOML file). The
//! token is a secret: never printed, logged or in errors.

use anchorbot_platform::redact::TokenPattern;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Discord's origin; REST goes to `{api_url}/api/v10/…`.
pub const DEFAULT_API_URL: &str = "https://discord.com";

/// Discord's own environment variable for the token, with its key in [`DiscordSettings`].
pub const ENV: &[(&str, &str)] = &[("DISCORD_TOKEN", "token")];

/// The shape of Discord's bot token in text, for redaction: `Bot ` and then a long value with
/// dots in it (so "Bot said" stays).
pub const TOKEN_PATTERNS: &[TokenPattern] = &[TokenPattern {
    marker: "Bot ",
    keep_marker: true,
    min_chars: 20,
    needs_dot: true,
}];

/// The Discord adapter's settings. The token is a secret: never printed, logged or in errors.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct DiscordSettings {
    /// Bot token (`DISCORD_TOKEN`).
    #[serde(serialize_with = "anchorbot_platform::redact::serialize_redacted")]
    pub token: Option<SecretString>,
    /// Base of the REST API (`{base}/api/v10/…`) and of the gateway lookup
    /// (`ANCHORBOT_DISCORD_API_URL`).
    pub api_url: String,
    /// Register the slash commands in this guild only, which is instant
    /// (`ANCHORBOT_DISCORD_GUILD_ID`); without it they register globally.
    pub guild_id: Option<u64>,
    /// Answer a mention in a new thread made from it (the default), or in place.
    pub reply_in_thread: bool,
}

impl Default for DiscordSettings {
    fn default() -> Self {
        Self {
            token: None,
            api_url: DEFAULT_API_URL.into(),
            guild_id: None,
            reply_in_thread: true,
        }
    }
}

impl DiscordSettings {
    /// The secrets that are set.
    pub fn secrets(&self) -> impl Iterator<Item = &SecretString> {
        self.token.iter()
    }

    /// Every secret's slot, set or not (an empty value is unset after loading).
    pub fn secrets_mut(&mut self) -> [&mut Option<SecretString>; 1] {
        [&mut self.token]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DiscordConfig;

    #[test]
    fn the_token_never_shows_and_the_config_follows_the_settings() {
        let mut s = DiscordSettings::default();
        assert!(DiscordConfig::from_settings(&s).is_none());
        s.token = Some("MTIz.very-secret-token".into());
        s.guild_id = Some(42);
        let shown = format!("{s:?} {}", serde_json::to_string(&s).unwrap());
        assert!(!shown.contains("very-secret"), "{shown}");
        let cfg = DiscordConfig::from_settings(&s).unwrap();
        assert_eq!(cfg.guild_id, Some(42));
        assert_eq!(cfg.api_base(), "https://discord.com/api/v10");
        assert!(cfg.reply_in_thread);
    }
}
