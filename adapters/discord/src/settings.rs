//! The Discord adapter's part of anchorbot's settings (`[discord]` in the TOML file). The
//! token is a secret: never printed, logged or in errors.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The Discord adapter's settings. The token is a secret: never printed, logged or in errors.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct DiscordSettings {
    /// Bot token (`DISCORD_TOKEN`).
    #[serde(serialize_with = "redact")]
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
            api_url: "https://discord.com".into(),
            guild_id: None,
            reply_in_thread: true,
        }
    }
}

/// Writes a set secret as `[redacted]` (for `anchorbot doctor`), never its value.
fn redact<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("[redacted]"),
        None => s.serialize_none(),
    }
}
