//! The chat platforms `anchorbot run` starts: every adapter whose credentials are configured,
//! all in one process on one store, each built by its crate from its own settings. Beside them,
//! what the core asks of the platforms without naming them: their token shapes (for the log
//! writer) and their `doctor` checks. This is the wiring that names the platforms; the engine
//! never does.

use std::sync::Arc;

use anchorbot_discord::{DiscordAdapter, DiscordConfig, DiscordError};
use anchorbot_platform::doctor::Doctor;
use anchorbot_platform::redact::TokenPattern;
use anchorbot_platform::{Adapter, LocalBudget, RateBudget};
use anchorbot_slack::config::BadListen;
use anchorbot_slack::{SlackAdapter, SlackConfig, SlackError};

use crate::replica::budget::SharedBudget;
use crate::settings::Settings;
use crate::storage::Storage;

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
    #[error(transparent)]
    BadListen(#[from] BadListen),
}

/// Every platform's `doctor` checks, in the order they are printed.
pub fn doctors(settings: &Settings) -> Vec<&dyn Doctor> {
    vec![&settings.slack, &settings.discord]
}

/// The shapes of every platform's tokens, for the log writer to redact.
pub fn token_patterns() -> Vec<TokenPattern> {
    [
        anchorbot_slack::settings::TOKEN_PATTERNS,
        anchorbot_discord::settings::TOKEN_PATTERNS,
    ]
    .concat()
}

/// The adapters whose credentials are set, for a process alone on its store. They hold their
/// rate limits in one budget in this process (keyed by platform, workspace and method).
pub fn configured(settings: &Settings) -> Result<Vec<Box<dyn Adapter>>, AdaptersError> {
    with_budget(settings, Arc::new(LocalBudget::new()))
}

/// The adapters whose credentials are set, for a process on `storage`: on a database, which
/// other replicas may share, their budget is a [`SharedBudget`] (holds shared through the
/// store, allowances split among the live replicas); on sled, this process's own. Must be
/// called inside a Tokio runtime.
pub fn configured_on(
    settings: &Settings,
    storage: &Storage,
) -> Result<Vec<Box<dyn Adapter>>, AdaptersError> {
    let budget: Arc<dyn RateBudget> = if settings.store_location().is_database() {
        Arc::new(SharedBudget::start(
            storage.holds.clone(),
            storage.leases.clone(),
        ))
    } else {
        Arc::new(LocalBudget::new())
    };
    with_budget(settings, budget)
}

/// The adapters whose credentials are set, all spending `budget`.
fn with_budget(
    settings: &Settings,
    budget: Arc<dyn RateBudget>,
) -> Result<Vec<Box<dyn Adapter>>, AdaptersError> {
    let mut adapters: Vec<Box<dyn Adapter>> = Vec::new();
    if let Some(mut cfg) = SlackConfig::from_settings(&settings.slack)? {
        if settings.store_location().is_database() {
            // Replicas: one Socket Mode connection each (see `SlackConfig::socket_connections`).
            cfg.socket_connections = 1;
        }
        adapters.push(Box::new(SlackAdapter::with_budget(cfg, budget.clone())?));
    }
    if let Some(cfg) = DiscordConfig::from_settings(&settings.discord) {
        adapters.push(Box::new(DiscordAdapter::with_budget(cfg, budget.clone())?));
    }
    if adapters.is_empty() {
        return Err(AdaptersError::NoneConfigured);
    }
    Ok(adapters)
}
