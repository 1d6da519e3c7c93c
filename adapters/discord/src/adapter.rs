//! The adapter: serenity's gateway client with handlers that only queue and return (after
//! acknowledging a button press, or deferring a slash command, within Discord's 3 seconds:
//! the acknowledgement is sent from the handler itself, never from behind the mapping queue,
//! which a slow REST call can hold up), the mapping worker, the slash commands registered at
//! READY for the application's installation contexts, and the shutdown: stop the shards, then
//! let the mapper submit what was already queued. The gateway runs only while this replica
//! holds its role (see [`crate::role`]); otherwise the adapter stands by, its REST side
//! answering all the same.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorbot_platform::{
    Adapter, CommandSpec, EventSink, LocalBudget, Platform, PlatformError, RateBudget, Shutdown,
};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::json;
use serenity::all::{
    ClientBuilder, Context, EventHandler, GatewayIntents, HttpBuilder, Interaction, Message, Ready,
    ShardManager,
};

use crate::inbound::{self, Identity, Inbox, Work};
use crate::platform::DiscordPlatform;
use crate::rest::{Rest, RestError, CALLBACK_DEFERRED, CALLBACK_DEFERRED_UPDATE, EPHEMERAL};
use crate::role::{gateway_role, GatewayRole, Step, LEAD_WAIT, ROLE_TTL, SHARD};
use crate::DiscordConfig;

/// How long the events already queued get to be submitted at shutdown.
const DRAIN: Duration = Duration::from_secs(5);
/// How long the shards get to close at shutdown.
const CLOSE: Duration = Duration::from_secs(5);
/// How long to wait before asking Discord for the application again when it cannot be
/// reached.
const APPLICATION_RETRY: Duration = Duration::from_secs(5);

/// The gateway intents: guild channels and threads, their messages, DMs, and message content
/// (privileged: enable it in the developer portal).
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS
        | GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
}

/// Why the adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    /// The REST or download client could not be built.
    #[error(transparent)]
    Rest(#[from] RestError),
}

/// anchorbot in Discord.
pub struct DiscordAdapter {
    cfg: DiscordConfig,
    rest: Rest,
    platform: Arc<DiscordPlatform>,
}

impl DiscordAdapter {
    /// An adapter for `cfg`; nothing is contacted until it runs. Its rate limits are held in
    /// a budget of its own.
    pub fn new(cfg: DiscordConfig) -> Result<Self, DiscordError> {
        Self::with_budget(cfg, Arc::new(LocalBudget::new()))
    }

    /// An adapter for `cfg` whose rate limits are held in `budget`, shared with everyone else
    /// calling Discord as this bot.
    pub fn with_budget(
        cfg: DiscordConfig,
        budget: Arc<dyn RateBudget>,
    ) -> Result<Self, DiscordError> {
        let rest = Rest::with_budget(&cfg, budget)?;
        let platform = Arc::new(DiscordPlatform::new(
            cfg.clone(),
            rest.clone(),
            Rest::downloader()?,
        ));
        Ok(Self {
            cfg,
            rest,
            platform,
        })
    }
}

#[async_trait::async_trait]
impl Adapter for DiscordAdapter {
    fn name(&self) -> &'static str {
        "discord"
    }

    fn platform(&self) -> Arc<dyn Platform> {
        self.platform.clone()
    }

    async fn run(
        self: Box<Self>,
        sink: Arc<dyn EventSink>,
        commands: &'static [CommandSpec],
        mut shutdown: Shutdown,
    ) -> Result<(), PlatformError> {
        let (inbox, mapper, rx) =
            inbound::channel(self.cfg.clone(), self.rest.clone(), sink.clone());
        let mapping = tokio::spawn(mapper.run(rx, shutdown.clone()));
        let result = match self.application(&mut shutdown).await {
            Ok(Some(application)) => {
                let role = gateway_role(application, SHARD);
                let held = self
                    .hold_gateway(sink.as_ref(), &role, inbox, commands, &mut shutdown)
                    .await;
                // A replica standing by takes the gateway at once, not after the role lapses.
                sink.resign(&role).await;
                self.platform.set_standby(false);
                held
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        finish_mapping(mapping).await;
        result
    }
}

impl DiscordAdapter {
    /// The application's id, which names the gateway's role: asked of Discord until it
    /// answers (every [`APPLICATION_RETRY`] while it cannot be reached), `None` when shutdown
    /// comes first. A refusal (a wrong token) fails the adapter.
    async fn application(&self, shutdown: &mut Shutdown) -> Result<Option<u64>, PlatformError> {
        let mut warned = false;
        loop {
            match self.rest.call(Method::GET, "/applications/@me", None).await {
                Ok(app) => {
                    return inbound::snowflake(&app["id"]).map(Some).ok_or_else(|| {
                        PlatformError::Rejected(
                            "Discord's application (GET /applications/@me) has no id".into(),
                        )
                    })
                }
                Err(PlatformError::Rejected(e)) => {
                    return Err(PlatformError::Rejected(format!(
                        "Discord refused to name the bot's application (check DISCORD_TOKEN): {e}"
                    )))
                }
                Err(e) if !warned => {
                    tracing::warn!(error = %e, "Discord cannot be reached; trying again");
                    warned = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(APPLICATION_RETRY) => {}
                _ = shutdown.wait() => return Ok(None),
            }
        }
    }

    /// Runs the gateway while this replica holds `role` (renewing it every
    /// [`RENEW`](crate::role::RENEW)), and stands by while another replica does (asking every
    /// [`STANDBY_POLL`](crate::role::STANDBY_POLL)), until shutdown or the gateway fails.
    async fn hold_gateway(
        &self,
        sink: &dyn EventSink,
        role: &str,
        inbox: Inbox,
        commands: &'static [CommandSpec],
        shutdown: &mut Shutdown,
    ) -> Result<(), PlatformError> {
        // Once per process: a gateway taken again after a standby needs no new registration
        // (and a replica that never holds the gateway never registers).
        let registered = Arc::new(AtomicBool::new(false));
        let mut state = GatewayRole::Standby;
        let mut gateway: Option<Gateway> = None;
        let mut told_standby = false;
        loop {
            let asked = Instant::now();
            // A store that does not answer in time counts as a refusal.
            let ask = tokio::time::timeout(LEAD_WAIT, sink.lead(role, ROLE_TTL));
            let led = tokio::select! {
                led = ask => led.unwrap_or(false),
                ended = Gateway::ended(&mut gateway) => return ended,
                _ = shutdown.wait() => break,
            };
            let (next, step) = state.on_lead(led, asked, Instant::now(), ROLE_TTL);
            state = next;
            match step {
                Step::Start => {
                    tracing::info!("this replica holds the Discord gateway; connecting");
                    told_standby = false;
                    let session = self.connect(inbox.clone(), commands, registered.clone());
                    gateway = Some(session.await?);
                }
                Step::Stop => {
                    tracing::warn!(
                        "the Discord gateway role was not renewed in time and may be another \
                         replica's; closing this session and standing by"
                    );
                    if let Some(g) = gateway.take() {
                        g.close(&self.platform).await;
                    }
                }
                Step::Keep => {}
            }
            if state.standby() && !told_standby {
                tracing::info!("another replica holds the Discord gateway; standing by");
                told_standby = true;
            }
            self.platform.set_standby(state.standby());
            tokio::select! {
                ended = Gateway::ended(&mut gateway) => return ended,
                _ = tokio::time::sleep(state.next_ask()) => {}
                _ = shutdown.wait() => break,
            }
        }
        tracing::info!("Discord: shutting down; no new events are taken");
        if let Some(g) = gateway.take() {
            g.close(&self.platform).await;
        }
        Ok(())
    }

    /// Opens a gateway session with serenity, its handlers queueing into `inbox`.
    async fn connect(
        &self,
        inbox: Inbox,
        commands: &'static [CommandSpec],
        registered: Arc<AtomicBool>,
    ) -> Result<Gateway, PlatformError> {
        // With serenity's rate limiter on, the proxy is ignored; serenity only fetches the
        // gateway URL, and every other call goes through the adapter's REST layer, which holds
        // Discord's rate limits per bucket.
        let http = HttpBuilder::new(self.cfg.token.expose_secret())
            .proxy(self.cfg.origin())
            .ratelimiter_disabled(true)
            .build();
        let handler = Handler {
            inbox,
            rest: self.rest.clone(),
            guild: self.cfg.guild_id,
            commands,
            registered,
            platform: self.platform.clone(),
        };
        let mut client = ClientBuilder::new_with_http(http, intents())
            .event_handler(handler)
            .await
            .map_err(|e| PlatformError::Transport(format!("Discord client: {e}")))?;
        let shards = client.shard_manager.clone();
        let task = tokio::spawn(async move { client.start().await });
        Ok(Gateway { shards, task })
    }
}

/// A running gateway session: serenity's client and its shards.
struct Gateway {
    shards: Arc<ShardManager>,
    task: tokio::task::JoinHandle<Result<(), serenity::Error>>,
}

impl Gateway {
    /// Resolves when the running gateway (if any) ends by itself: how it ended.
    async fn ended(gateway: &mut Option<Gateway>) -> Result<(), PlatformError> {
        let Some(g) = gateway else {
            return std::future::pending().await;
        };
        match (&mut g.task).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(PlatformError::Transport(format!("Discord gateway: {e}"))),
            Err(e) => Err(PlatformError::Transport(format!(
                "Discord gateway task: {e}"
            ))),
        }
    }

    /// Closes the session (the shards, then serenity's client, cut off after [`CLOSE`]).
    async fn close(mut self, platform: &DiscordPlatform) {
        self.shards.shutdown_all().await;
        if tokio::time::timeout(CLOSE, &mut self.task).await.is_err() {
            self.task.abort();
        }
        platform.set_connected(false);
    }
}

/// Lets the mapper submit what was queued, then stops it.
async fn finish_mapping(mut mapping: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(DRAIN, &mut mapping).await.is_err() {
        tracing::warn!("Discord events still queued at shutdown were dropped");
        mapping.abort();
    }
}

/// serenity's event handler: acknowledges what Discord wants acknowledged, queues, returns.
struct Handler {
    inbox: Inbox,
    rest: Rest,
    guild: Option<u64>,
    commands: &'static [CommandSpec],
    /// The commands were registered by this process (READY comes again after a full
    /// reconnect, and with each session a standby opens when it takes the gateway over).
    registered: Arc<AtomicBool>,
    /// Told when the session comes up or drops (readiness).
    platform: Arc<DiscordPlatform>,
}

impl Handler {
    /// Sends an interaction's callback of `kind` (type 5 deferrals are ephemeral).
    async fn acknowledge(&self, id: u64, token: &str, kind: u8) -> bool {
        let mut body = json!({ "type": kind });
        if kind == CALLBACK_DEFERRED {
            body["data"] = json!({ "flags": EPHEMERAL });
        }
        let path = format!("/interactions/{id}/{token}/callback");
        match self.rest.call(Method::POST, &path, Some(&body)).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "interaction not acknowledged");
                false
            }
        }
    }
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        let me = Identity {
            bot: ready.user.id.get(),
            application: ready.application.id.get(),
        };
        tracing::info!(
            bot = me.bot,
            application = me.application,
            "connected to Discord"
        );
        self.platform.set_connected(true);
        self.inbox.queue(Work::Ready(me));
        if !self.registered.swap(true, Ordering::SeqCst) {
            let (rest, guild, commands) = (self.rest.clone(), self.guild, self.commands);
            tokio::spawn(async move {
                crate::commands::register(&rest, me.application, guild, commands).await;
            });
        }
    }

    async fn resume(&self, _ctx: Context, _: serenity::model::event::ResumedEvent) {
        self.platform.set_connected(true);
    }

    async fn shard_stage_update(
        &self,
        _ctx: Context,
        event: serenity::gateway::ShardStageUpdateEvent,
    ) {
        // Any stage but Connected means no events arrive until READY or RESUMED.
        if !matches!(event.new, serenity::gateway::ConnectionStage::Connected) {
            self.platform.set_connected(false);
        }
    }

    async fn message(&self, _ctx: Context, msg: Message) {
        if self.inbox.fresh(&msg.id.get().to_string()) {
            self.inbox.queue(Work::Message(Box::new(msg)));
        }
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        if !self.inbox.fresh(&format!("i:{}", interaction.id().get())) {
            return;
        }
        match interaction {
            Interaction::Command(c) => {
                // Every command is deferred here, ephemerally, before it is queued: its answer
                // may wait behind the mapper or the engine, Discord's 3 s may not. The answer
                // then edits `@original`.
                let deferred = self
                    .acknowledge(c.id.get(), &c.token, CALLBACK_DEFERRED)
                    .await;
                self.inbox.queue(Work::Command(Box::new(c), deferred));
            }
            Interaction::Component(c) => {
                self.acknowledge(c.id.get(), &c.token, CALLBACK_DEFERRED_UPDATE)
                    .await;
                self.inbox.queue(Work::Component(Box::new(c)));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intents_include_message_content() {
        let i = intents();
        assert!(i.contains(GatewayIntents::MESSAGE_CONTENT));
        assert!(i.contains(GatewayIntents::DIRECT_MESSAGES));
        assert!(!i.contains(GatewayIntents::GUILD_MEMBERS));
    }

    #[test]
    fn new_builds_without_contacting_discord() {
        let cfg = DiscordConfig::new(secrecy::SecretString::from("abc"));
        let a = DiscordAdapter::new(cfg).unwrap();
        assert_eq!(a.name(), "discord");
        assert_eq!(a.platform().limits().max_message_chars, 2000);
    }
}
