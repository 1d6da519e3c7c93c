//! The adapter: serenity's gateway client with handlers that only queue and return (after
//! acknowledging a button press, or deferring a slash command, within Discord's 3 seconds:
//! the acknowledgement is sent from the handler itself, never from behind the mapping queue,
//! which a slow REST call can hold up), the mapping worker, the slash commands registered at
//! READY for the application's installation contexts, and the shutdown: stop the shards, then
//! let the mapper submit what was already queued.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anchorbot_platform::{
    Adapter, CommandSpec, EventSink, LocalBudget, Platform, PlatformError, RateBudget, Shutdown,
};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::json;
use serenity::all::{
    ClientBuilder, Context, EventHandler, GatewayIntents, HttpBuilder, Interaction, Message, Ready,
};

use crate::inbound::{self, Identity, Inbox, Work};
use crate::platform::DiscordPlatform;
use crate::rest::{Rest, RestError, CALLBACK_DEFERRED, CALLBACK_DEFERRED_UPDATE, EPHEMERAL};
use crate::DiscordConfig;

/// How long the events already queued get to be submitted at shutdown.
const DRAIN: Duration = Duration::from_secs(5);
/// How long the shards get to close at shutdown.
const CLOSE: Duration = Duration::from_secs(5);

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
        // With serenity's rate limiter on, the proxy is ignored; serenity only fetches the
        // gateway URL, and every other call goes through the adapter's REST layer, which holds
        // Discord's rate limits per bucket.
        let http = HttpBuilder::new(self.cfg.token.expose_secret())
            .proxy(self.cfg.origin())
            .ratelimiter_disabled(true)
            .build();
        let (inbox, mapper, rx) = inbound::channel(self.cfg.clone(), self.rest.clone(), sink);
        let mapping = tokio::spawn(mapper.run(rx, shutdown.clone()));
        let handler = Handler {
            inbox,
            rest: self.rest.clone(),
            guild: self.cfg.guild_id,
            commands,
            registered: Arc::new(AtomicBool::new(false)),
            platform: self.platform.clone(),
        };
        let client = ClientBuilder::new_with_http(http, intents())
            .event_handler(handler)
            .await;
        let mut client = match client {
            Ok(c) => c,
            Err(e) => {
                finish_mapping(mapping).await;
                return Err(PlatformError::Transport(format!("Discord client: {e}")));
            }
        };
        let shards = client.shard_manager.clone();
        let mut gateway = tokio::spawn(async move { client.start().await });
        let result = tokio::select! {
            ended = &mut gateway => match ended {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(PlatformError::Transport(format!("Discord gateway: {e}"))),
                Err(e) => Err(PlatformError::Transport(format!("Discord gateway task: {e}"))),
            },
            _ = shutdown.wait() => {
                tracing::info!("Discord: shutting down; no new events are taken");
                shards.shutdown_all().await;
                if tokio::time::timeout(CLOSE, &mut gateway).await.is_err() {
                    gateway.abort();
                }
                Ok(())
            }
        };
        finish_mapping(mapping).await;
        result
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
    /// The commands were registered in this run (READY comes again after a full reconnect).
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
