//! The adapter's runtime configuration, built from its settings ([`crate::settings`]). The
//! token is a secret: it never appears in `Debug`, logs or errors.

use secrecy::SecretString;

use crate::settings::{DiscordSettings, DEFAULT_API_URL};

/// How the adapter reaches Discord and behaves there.
#[derive(Debug, Clone)]
pub struct DiscordConfig {
    /// Bot token, as the developer portal shows it (without `Bot `).
    pub token: SecretString,
    /// The origin REST calls go to (serenity's `HttpBuilder::proxy`); the gateway URL is read
    /// from `GET {api_url}/api/v10/gateway`, so a local server can stand in for Discord.
    pub api_url: String,
    /// Register the slash commands in this guild only (instant); otherwise globally.
    pub guild_id: Option<u64>,
    /// Answer a mention in a thread created from the message (true), or in place.
    pub reply_in_thread: bool,
}

impl DiscordConfig {
    /// A configuration for `token` with every other setting at its default.
    pub fn new(token: SecretString) -> Self {
        Self {
            token,
            api_url: DEFAULT_API_URL.to_string(),
            guild_id: None,
            reply_in_thread: true,
        }
    }

    /// The configuration `settings` describe: `None` without a token (Discord is not
    /// configured).
    pub fn from_settings(settings: &DiscordSettings) -> Option<Self> {
        let token = settings.token.clone()?;
        Some(Self {
            api_url: settings.api_url.clone(),
            guild_id: settings.guild_id,
            reply_in_thread: settings.reply_in_thread,
            ..Self::new(token)
        })
    }

    /// The origin without a trailing slash.
    pub fn origin(&self) -> &str {
        self.api_url.trim_end_matches('/')
    }

    /// The REST base: `{origin}/api/v10`.
    pub fn api_base(&self) -> String {
        format!("{}/api/v10", self.origin())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let cfg = DiscordConfig::new(SecretString::from("MTIz.very-secret-token"));
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("very-secret-token"), "{shown}");
        assert_eq!(cfg.api_base(), "https://discord.com/api/v10");
        assert!(cfg.reply_in_thread);
    }

    #[test]
    fn a_trailing_slash_is_dropped() {
        let mut cfg = DiscordConfig::new(SecretString::from("t"));
        cfg.api_url = "http://127.0.0.1:9000/".into();
        assert_eq!(cfg.api_base(), "http://127.0.0.1:9000/api/v10");
    }
}
