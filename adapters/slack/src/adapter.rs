//! The adapter: who the bot is (`auth.test`), Socket Mode through slack-morphism with
//! handlers that only queue and return (so acks go out at once), the mapping worker, and the
//! shutdown: stop taking events, then return so the app can finish the turns in flight.

use std::sync::Arc;

use anchorbot_platform::{Adapter, CommandSpec, EventSink, Platform, PlatformError, Shutdown};
use secrecy::ExposeSecret;
use slack_morphism::prelude::*;

use crate::client::{token, Api, ClientError, Connector};
use crate::inbound::{self, Identity, Inbox, Work};
use crate::platform::SlackPlatform;
use crate::SlackConfig;

/// Why the adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    /// The Web API client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Neither Socket Mode (an app token) nor the Events API (a signing secret and a listen
    /// address) is configured.
    #[error("set SLACK_APP_TOKEN for Socket Mode, or SLACK_SIGNING_SECRET and ANCHORBOT_SLACK_LISTEN for the Events API over HTTP")]
    NoReceiver,
}

/// anchorbot in Slack.
pub struct SlackAdapter {
    cfg: SlackConfig,
    api: Api,
    platform: Arc<SlackPlatform>,
}

impl SlackAdapter {
    /// An adapter for `cfg`; nothing is contacted until it runs. Its rate limits are held in
    /// a budget of its own.
    pub fn new(cfg: SlackConfig) -> Result<Self, SlackError> {
        Self::with_budget(cfg, Arc::new(anchorbot_platform::LocalBudget::new()))
    }

    /// An adapter for `cfg` whose Web API calls spend `budget`, shared with whoever else holds
    /// it (the process's other adapters, or a store shared by replicas).
    pub fn with_budget(
        cfg: SlackConfig,
        budget: Arc<dyn anchorbot_platform::RateBudget>,
    ) -> Result<Self, SlackError> {
        if cfg.app_token.is_none() && (cfg.signing_secret.is_none() || cfg.listen.is_none()) {
            return Err(SlackError::NoReceiver);
        }
        let api = Api::new(&cfg)?.with_budget(budget);
        let platform = Arc::new(SlackPlatform::new(cfg.clone(), api.clone()));
        Ok(Self { cfg, api, platform })
    }

    /// Who the bot is, from `auth.test`.
    async fn identity(&self) -> Result<Identity, PlatformError> {
        let patience = crate::rate::Patience::Wait(std::time::Duration::from_secs(30));
        crate::rate::before_call(&self.api, "auth.test", None, patience)
            .await
            .map_err(|retry_after| PlatformError::RateLimited { retry_after })?;
        let me = self
            .api
            .session()
            .auth_test()
            .await
            // Mapped like every other call, so an unreachable Slack is a transport failure,
            // not a refusal.
            .map_err(|e| match crate::platform::map_error(&self.api, &e) {
                PlatformError::Rejected(code) => {
                    PlatformError::Rejected(format!("auth.test: {code}"))
                }
                other => other,
            })?;
        Ok(Identity {
            team: me.team_id.to_string(),
            bot_user: me.user_id.to_string(),
            bot_id: me.bot_id.map(|b| b.to_string()),
        })
    }
}

#[async_trait::async_trait]
impl Adapter for SlackAdapter {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn platform(&self) -> Arc<dyn Platform> {
        self.platform.clone()
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn EventSink>,
        _commands: &'static [CommandSpec],
        mut shutdown: Shutdown,
    ) -> Result<(), PlatformError> {
        let me = self.identity().await?;
        // Every later call counts against this workspace's limits.
        self.api.set_workspace(&me.team);
        tracing::info!(team = %me.team, bot = %me.bot_user, "connected to Slack");
        let (inbox, mapper, rx) = inbound::channel(self.cfg.clone(), self.api.clone(), me, sink);
        let mapping = tokio::spawn(mapper.run(rx, shutdown.clone()));
        let Some(app_token) = &self.cfg.app_token else {
            // The Events API over HTTP: ready once the endpoint serves (a failed bind ends the
            // adapter, and with it the process).
            self.platform.set_connected(true);
            let served = crate::http::serve(&self.cfg, inbox, shutdown).await;
            self.platform.set_connected(false);
            finish_mapping(mapping).await;
            return served;
        };
        let environment = Arc::new(
            SlackClientEventsListenerEnvironment::new(self.api.client.clone())
                .with_error_handler(on_error)
                .with_user_state(inbox)
                .with_user_state(Liveness(self.platform.clone())),
        );
        let callbacks = SlackSocketModeListenerCallbacks::new()
            .with_hello_events(on_hello)
            .with_push_events(on_push)
            .with_command_events(on_command)
            .with_interaction_events(on_interaction);
        let listener = SlackClientSocketModeListener::new(
            &SlackClientSocketModeConfig::new()
                .with_max_connections_count(self.cfg.socket_connections.max(1)),
            environment,
            callbacks,
        );
        listener
            .listen_for(&token(app_token.expose_secret()))
            .await
            .map_err(|e| PlatformError::Transport(format!("Socket Mode: {e}")))?;
        // Connected once Slack says hello on a Socket Mode connection (see `on_hello`).
        listener.start().await;
        shutdown.wait().await;
        self.platform.set_connected(false);
        tracing::info!("Slack: shutting down; no new events are taken");
        listener.shutdown().await;
        drop(listener);
        finish_mapping(mapping).await;
        Ok(())
    }
}

/// How long the events already acknowledged to Slack get to be submitted at shutdown.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Lets the mapper submit what Slack was told arrived, then stops it.
async fn finish_mapping(mut mapping: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(DRAIN, &mut mapping).await.is_err() {
        tracing::warn!("Slack events still queued at shutdown were dropped");
        mapping.abort();
    }
}

async fn inbox(states: &SlackClientEventsUserState) -> Option<Inbox> {
    states.read().await.get_user_state::<Inbox>().cloned()
}

/// The platform, for the Socket Mode callbacks to report the connection.
#[derive(Clone)]
struct Liveness(Arc<SlackPlatform>);

/// Slack's `hello` opens every Socket Mode connection, the first and each reconnection: from
/// then on events arrive.
/// (Generic over the event: slack-morphism does not export its hello event's type by name.)
async fn on_hello<Hello>(
    _event: Hello,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) {
    if let Some(liveness) = states.read().await.get_user_state::<Liveness>() {
        liveness.0.set_connected(true);
    }
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    if let Some(inbox) = inbox(&states).await {
        let id = event.event_id.to_string();
        inbox.offer(Some(&id), Work::Push(Box::new(event))).await;
    }
    Ok(())
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    if let Some(inbox) = inbox(&states).await {
        let id = format!("cmd:{}", event.trigger_id);
        inbox.offer(Some(&id), Work::Command(Box::new(event))).await;
    }
    // The answer follows through the command's response_url; the ack only says it arrived.
    Ok(SlackCommandEventResponse::new(SlackMessageContent::new()))
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackClient<Connector>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    if let Some(inbox) = inbox(&states).await {
        inbox.offer(None, Work::Interaction(Box::new(event))).await;
    }
    Ok(())
}

fn on_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<SlackClient<Connector>>,
    _states: SlackClientEventsUserState,
) -> slack_morphism::listener::HttpStatusCode {
    tracing::warn!(error = %err, "Slack listener error");
    slack_morphism::listener::HttpStatusCode::OK
}
