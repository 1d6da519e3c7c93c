//! The adapter's runtime configuration, built from its settings ([`crate::settings`]). Tokens
//! are secrets: they never appear in `Debug`, logs or errors.

use std::net::SocketAddr;

use secrecy::SecretString;

use crate::settings::{default_prompts, SlackSettings, DEFAULT_API_URL};

/// `slack.listen` is not a socket address.
#[derive(Debug, thiserror::Error)]
#[error("slack.listen (ANCHORBOT_SLACK_LISTEN) = {0:?} is not an address such as 0.0.0.0:3000")]
pub struct BadListen(pub String);

/// How the adapter reaches Slack and behaves there.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// Bot token (`xoxb-…`): every Web API call.
    pub bot_token: SecretString,
    /// App-level token (`xapp-…`, `connections:write`): Socket Mode. With none, the Events API
    /// over HTTP is used (`signing_secret` and `listen`).
    pub app_token: Option<SecretString>,
    /// Signing secret: verifies Events API requests over HTTP.
    pub signing_secret: Option<SecretString>,
    /// Where the Events API listener binds (`0.0.0.0:3000`).
    pub listen: Option<SocketAddr>,
    /// The Web API base URL (`https://slack.com/api`); `apps.connections.open` included.
    pub api_url: String,
    /// Suggested prompts shown when an assistant thread starts.
    pub suggested_prompts: Vec<String>,
    /// Answer messages written by other bots.
    pub answer_bots: bool,
    /// The slash command's name, without the slash.
    pub command: String,
    /// Socket Mode connections this process keeps open (Slack spreads an app's events over
    /// all of them, up to ten). Two by default, so one refresh never leaves it deaf; one per
    /// replica when several share the work, since each open is a Tier 1 call (about one a
    /// minute) and the other replicas' connections cover a refresh.
    pub socket_connections: u32,
}

impl SlackConfig {
    /// A configuration for `bot_token` with every other setting at its default.
    pub fn new(bot_token: SecretString) -> Self {
        Self {
            bot_token,
            app_token: None,
            signing_secret: None,
            listen: None,
            api_url: DEFAULT_API_URL.to_string(),
            suggested_prompts: default_prompts(),
            answer_bots: false,
            command: "anchor".to_string(),
            socket_connections: 2,
        }
    }

    /// The configuration `settings` describe: `None` without a bot token (Slack is not
    /// configured).
    pub fn from_settings(settings: &SlackSettings) -> Result<Option<Self>, BadListen> {
        let Some(bot) = &settings.bot_token else {
            return Ok(None);
        };
        let listen = match &settings.listen {
            Some(l) => Some(l.parse().map_err(|_| BadListen(l.clone()))?),
            None => None,
        };
        Ok(Some(Self {
            app_token: settings.app_token.clone(),
            signing_secret: settings.signing_secret.clone(),
            listen,
            api_url: settings.api_url.clone(),
            suggested_prompts: settings.suggested_prompts.clone(),
            answer_bots: settings.answer_bots,
            ..Self::new(bot.clone())
        }))
    }

    /// The Web API base without a trailing slash: slack-morphism joins `/{method}` to it.
    pub fn api_base(&self) -> String {
        self.api_url.trim_end_matches('/').to_string()
    }
}
