//! The Slack adapter's part of anchorbot's settings (`[slack]` in the TOML file). Tokens are
//! secrets: never printed, logged or in errors.

use anchorbot_platform::redact::TokenPattern;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Slack's Web API, where every call goes unless `api_url` says otherwise.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// The suggested prompts an assistant thread opens with.
pub fn default_prompts() -> Vec<String> {
    vec![
        "Summarize this thread".to_string(),
        "What did we decide?".to_string(),
        "What can you do?".to_string(),
    ]
}

/// Slack's own environment variables for the secrets, each with its key in [`SlackSettings`].
pub const ENV: &[(&str, &str)] = &[
    ("SLACK_BOT_TOKEN", "bot_token"),
    ("SLACK_APP_TOKEN", "app_token"),
    ("SLACK_SIGNING_SECRET", "signing_secret"),
];

/// The shapes of Slack's tokens (bot, user, app-level, refresh, configuration), for redaction.
pub const TOKEN_PATTERNS: &[TokenPattern] = &[
    TokenPattern::prefix("xoxb-"),
    TokenPattern::prefix("xoxp-"),
    TokenPattern::prefix("xoxa-"),
    TokenPattern::prefix("xoxr-"),
    TokenPattern::prefix("xoxs-"),
    TokenPattern::prefix("xoxe-"),
    TokenPattern::prefix("xapp-"),
];

/// The Slack adapter's settings. Tokens are secrets: never printed, logged or in errors.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SlackSettings {
    /// Bot token (`xoxb-…`, `SLACK_BOT_TOKEN`): every Web API call.
    #[serde(serialize_with = "anchorbot_platform::redact::serialize_redacted")]
    pub bot_token: Option<SecretString>,
    /// App-level token (`xapp-…`, `SLACK_APP_TOKEN`): Socket Mode.
    #[serde(serialize_with = "anchorbot_platform::redact::serialize_redacted")]
    pub app_token: Option<SecretString>,
    /// Signing secret (`SLACK_SIGNING_SECRET`): the Events API over HTTP.
    #[serde(serialize_with = "anchorbot_platform::redact::serialize_redacted")]
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
            api_url: DEFAULT_API_URL.into(),
            suggested_prompts: default_prompts(),
            answer_bots: false,
        }
    }
}

impl SlackSettings {
    /// The secrets that are set.
    pub fn secrets(&self) -> impl Iterator<Item = &SecretString> {
        [&self.bot_token, &self.app_token, &self.signing_secret]
            .into_iter()
            .flatten()
    }

    /// Every secret's slot, set or not (an empty value is unset after loading).
    pub fn secrets_mut(&mut self) -> [&mut Option<SecretString>; 3] {
        [
            &mut self.bot_token,
            &mut self.app_token,
            &mut self.signing_secret,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SlackConfig;

    #[test]
    fn secrets_never_show_and_empty_settings_start_nothing() {
        let mut s = SlackSettings::default();
        assert!(SlackConfig::from_settings(&s).unwrap().is_none());
        s.bot_token = Some("xoxb-very-secret".into());
        s.signing_secret = Some("signing-very-secret".into());
        let shown = format!("{s:?} {}", serde_json::to_string(&s).unwrap());
        assert!(!shown.contains("very-secret"), "{shown}");
        assert_eq!(s.secrets().count(), 2);
        let cfg = SlackConfig::from_settings(&s).unwrap().unwrap();
        assert_eq!(cfg.api_url, DEFAULT_API_URL);
        assert_eq!(cfg.suggested_prompts, default_prompts());
        s.listen = Some("not an address".into());
        let err = SlackConfig::from_settings(&s).unwrap_err().to_string();
        assert!(err.contains("ANCHORBOT_SLACK_LISTEN"), "{err}");
    }
}
