//! The chat platforms `anchorbot run` starts: every adapter whose credentials are configured,
//! all in one process on one store. This is the one place that names the platforms; the
//! engine never does.

use anchorbot_discord::{DiscordAdapter, DiscordConfig, DiscordError};
use std::sync::Arc;

use anchorbot_platform::{Adapter, LocalBudget, RateBudget};
use anchorbot_slack::{SlackAdapter, SlackConfig, SlackError};

use crate::settings::Settings;

/// Why the configured adapters cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdaptersError {
    /// No platform has credentials.
    #[error("no chat platform is configured. For Slack set SLACK_BOT_TOKEN and SLACK_APP_TOKEN (Socket Mode), or SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET and ANCHORBOT_SLACK_LISTEN (Events API over HTTP); for Discord set DISCORD_TOKEN. The README's \"Slack\" section says how to get them. `anchorbot chat` talks to the bot in this terminal")]
    NoneConfigured,
    /// A Slack setting is unusable.
    #[error("Slack: {0}")]
    Slack(#[from] SlackError),
    /// A Discord setting is unusable.
    #[error("Discord: {0}")]
    Discord(#[from] DiscordError),
    /// An address that does not parse.
    #[error(
        "slack.listen (ANCHORBOT_SLACK_LISTEN) = {0:?} is not an address such as 0.0.0.0:3000"
    )]
    BadListen(String),
}

/// The adapters whose credentials are set. They hold their rate limits in one budget (keyed by
/// platform, workspace and method), the seam where a store shared by replicas would go.
pub fn configured(settings: &Settings) -> Result<Vec<Box<dyn Adapter>>, AdaptersError> {
    let budget: Arc<dyn RateBudget> = Arc::new(LocalBudget::new());
    let mut adapters: Vec<Box<dyn Adapter>> = Vec::new();
    let s = &settings.slack;
    if let Some(bot) = &s.bot_token {
        let mut cfg = SlackConfig::new(bot.clone());
        cfg.app_token = s.app_token.clone();
        cfg.signing_secret = s.signing_secret.clone();
        cfg.listen = match &s.listen {
            Some(l) => Some(l.parse().map_err(|_| AdaptersError::BadListen(l.clone()))?),
            None => None,
        };
        cfg.api_url = s.api_url.clone();
        cfg.suggested_prompts = s.suggested_prompts.clone();
        cfg.answer_bots = s.answer_bots;
        adapters.push(Box::new(SlackAdapter::with_budget(cfg, budget.clone())?));
    }
    let d = &settings.discord;
    if let Some(token) = &d.token {
        let mut cfg = DiscordConfig::new(token.clone());
        cfg.api_url = d.api_url.clone();
        cfg.guild_id = d.guild_id;
        cfg.reply_in_thread = d.reply_in_thread;
        adapters.push(Box::new(DiscordAdapter::with_budget(cfg, budget.clone())?));
    }
    if adapters.is_empty() {
        return Err(AdaptersError::NoneConfigured);
    }
    Ok(adapters)
}
