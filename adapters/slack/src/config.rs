//! The adapter's settings. Tokens are secrets: they never appear in `Debug`, logs or errors.

use std::net::SocketAddr;

use secrecy::SecretString;

/// Slack's Web API, where every call goes unless `api_url` says otherwise.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

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

    /// The Web API base without a trailing slash: slack-morphism joins `/{method}` to it.
    pub fn api_base(&self) -> String {
        self.api_url.trim_end_matches('/').to_string()
    }
}

/// The suggested prompts an assistant thread opens with.
pub fn default_prompts() -> Vec<String> {
    vec![
        "Summarize this thread".to_string(),
        "What did we decide?".to_string(),
        "What can you do?".to_string(),
    ]
}
