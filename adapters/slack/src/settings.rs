//! The Slack adapter's part of anchorbot's settings (`[slack]` in the TOML file). Tokens are
//! secrets: never printed, logged or in errors.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The Slack adapter's settings. Tokens are secrets: never printed, logged or in errors.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SlackSettings {
    /// Bot token (`xoxb-…`, `SLACK_BOT_TOKEN`): every Web API call.
    #[serde(serialize_with = "redact")]
    pub bot_token: Option<SecretString>,
    /// App-level token (`xapp-…`, `SLACK_APP_TOKEN`): Socket Mode.
    #[serde(serialize_with = "redact")]
    pub app_token: Option<SecretString>,
    /// Signing secret (`SLACK_SIGNING_SECRET`): the Events API over HTTP.
    #[serde(serialize_with = "redact")]
    pub signing_secret: Option<SecretString>,
    /// Where the Events API listener binds, e.g. `0.0.0.0:3000` (`ANCHORBOT_SLACK_LISTEN`).
    pub listen: Option<String>,
    /// The Web API base URL (`ANCHORBOT_SLACK_API_URL`); every call goes there.
    pub api_url: String,
    /// Prompts suggested when an assistant thread starts.
    pub suggested_prompts: Vec<String>,
    /// Answer messages other bots write.
    pub answer_bots: bool,
}

impl Default for SlackSettings {
    fn default() -> Self {
        Self {
            bot_token: None,
            app_token: None,
            signing_secret: None,
            listen: None,
            api_url: "https://slack.com/api".into(),
            suggested_prompts: vec![
                "Summarize this thread".into(),
                "What did we decide?".into(),
                "What can you do?".into(),
            ],
            answer_bots: false,
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
