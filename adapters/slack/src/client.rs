//! The Web API client: slack-morphism over hyper, pointed at `api_url` (so a local server can
//! stand in for Slack), HTTP or HTTPS, and the rate-limit budget every call spends.
//!
//! slack-morphism's own rate control is off. It would throttle and retry each call on its own
//! counts, invisible to the shared budget: a retry it sends after one conversation's 429 is a
//! call the budget did not count, and it cannot fall back (post instead of stream) or coalesce
//! writes. So a 429 comes back as `RateLimitError { retry_after }`, and [`crate::rate`] holds
//! the method for every conversation and decides what waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use anchorbot_platform::{LocalBudget, RateBudget};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use secrecy::ExposeSecret;
use slack_morphism::prelude::*;

use crate::names::UserNames;
use crate::SlackConfig;

/// The hyper connector slack-morphism runs on.
pub type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;
/// The slack-morphism client.
pub type Client = SlackClient<Connector>;

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The system's root certificates could not be loaded.
    #[error("cannot load the system's TLS root certificates: {0}")]
    Tls(std::io::Error),
}

/// The Web API as the adapter uses it: the client, the bot token, and counters.
#[derive(Clone)]
pub struct Api {
    /// slack-morphism's client.
    pub client: Arc<Client>,
    /// The bot token, for sessions.
    pub bot: SlackApiToken,
    /// Rate-limit waits (HTTP 429) seen by this adapter's own calls.
    pub rate_limited: Arc<AtomicU64>,
    /// Web API calls made, for benchmarks and `/status`-style counters.
    pub calls: Arc<AtomicU64>,
    /// The rate-limit budget every call of this adapter spends (per method and workspace).
    pub budget: Arc<dyn RateBudget>,
    /// People's names from `users.info`, shared by live messages and thread history.
    pub names: Arc<UserNames>,
    /// The bot token's workspace (from `auth.test`): the scope the budget counts calls in.
    workspace: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

impl Api {
    /// A client for `cfg.api_url` with the bot token.
    pub fn new(cfg: &SlackConfig) -> Result<Self, ClientError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(crate::client::tls_provider())
            .map_err(ClientError::Tls)?
            .https_or_http()
            .enable_http1()
            .build();
        // No `with_rate_control`: the budget decides (see the module's doc).
        let connector =
            SlackClientHyperConnector::with_connector(https).with_slack_api_url(&cfg.api_base());
        Ok(Self {
            client: Arc::new(SlackClient::new(connector)),
            bot: token(cfg.bot_token.expose_secret()),
            rate_limited: Arc::new(AtomicU64::new(0)),
            calls: Arc::new(AtomicU64::new(0)),
            budget: Arc::new(LocalBudget::new()),
            names: Arc::new(UserNames::new()),
            workspace: Arc::new(OnceLock::new()),
        })
    }

    /// The same client spending `budget` (a store shared by several replicas, say).
    pub fn with_budget(mut self, budget: Arc<dyn RateBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// Records the bot token's workspace, once it is known from `auth.test`.
    pub fn set_workspace(&self, team: &str) {
        let _ = self.workspace.set(team.to_string());
    }

    /// The bot token's workspace; empty before `auth.test` answered. One bot token belongs to
    /// one workspace, whose limits every call of this adapter counts against. (An org-wide
    /// install's token spans workspaces with a budget each; counting them as one only spends
    /// more carefully.)
    pub fn workspace(&self) -> String {
        self.workspace.get().cloned().unwrap_or_default()
    }

    /// A session with the bot token; counts the call it is opened for.
    pub fn session(&self) -> SlackClientSession<'_, Connector> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.client.open_session(&self.bot)
    }
}

/// The TLS crypto provider, named rather than left to rustls' process default, which panics
/// when a build enables two providers (another crate's TLS feature can add aws-lc-rs).
pub fn tls_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A slack-morphism token from its secret value.
pub fn token(value: &str) -> SlackApiToken {
    SlackApiToken::new(SlackApiTokenValue::new(value.to_string()))
}
