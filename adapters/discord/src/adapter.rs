//! The adapter: serenity's gateway client with handlers that only queue and return (after
//! acknowledging a button press, or deferring `/clear`, within Discord's 3 seconds), the
//! mapping worker, the slash commands registered at READY, and the shutdown: stop the shards,
//! then let the mapper submit what was already queued.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anchorbot_platform::{Adapter, CommandSpec, EventSink, Platform, PlatformError, Shutdown};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
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
/// The commands registered as slash commands (the engine's others stay text-only).
const SLASH_COMMANDS: [&str; 4] = ["status", "files", "clear", "help"];
/// Commands whose answer may take longer than Discord's 3 s: deferred (type 5) first.
const DEFERRED_COMMANDS: [&str; 1] = ["clear"];
/// Discord's limit on a command description.
const DESCRIPTION_CHARS: usize = 100;

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
    /// An adapter for `cfg`; nothing is contacted until it runs.
    pub fn new(cfg: DiscordConfig) -> Result<Self, DiscordError> {
        let rest = Rest::new(&cfg)?;
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
        // With serenity's rate limiter on, the proxy is ignored; 429s are honoured by the
        // replies themselves (the REST layer reports Discord's retry_after).
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
            tokio::spawn(
                async move { register_commands(&rest, me.application, guild, commands).await },
            );
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
                let deferred = DEFERRED_COMMANDS.contains(&c.data.name.as_str())
                    && self
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

/// The slash commands as Discord's bulk overwrite takes them. Global commands are
/// user-installable and usable in guilds, the bot's DMs and private channels.
pub fn command_payload(commands: &[CommandSpec], global: bool) -> Value {
    let list: Vec<Value> = commands
        .iter()
        .filter(|c| SLASH_COMMANDS.contains(&c.name))
        .map(|c| {
            let mut cmd = json!({
                "name": c.name,
                "type": 1,
                "description": c.description.chars().take(DESCRIPTION_CHARS).collect::<String>(),
            });
            if let Some(arg) = c.argument {
                cmd["options"] = json!([{
                    "type": 3,
                    "name": "argument",
                    "description": arg.chars().take(DESCRIPTION_CHARS).collect::<String>(),
                    "required": false,
                }]);
            }
            // Discord reads these on global commands only.
            if global {
                cmd["integration_types"] = json!([0, 1]);
                cmd["contexts"] = json!([0, 1, 2]);
            }
            cmd
        })
        .collect();
    Value::Array(list)
}

/// Registers the slash commands by bulk overwrite: in `guild` (instant) or globally.
async fn register_commands(
    rest: &Rest,
    application: u64,
    guild: Option<u64>,
    commands: &[CommandSpec],
) {
    let path = match guild {
        Some(g) => format!("/applications/{application}/guilds/{g}/commands"),
        None => format!("/applications/{application}/commands"),
    };
    let body = command_payload(commands, guild.is_none());
    match rest.call(Method::PUT, &path, Some(&body)).await {
        Ok(_) => tracing::info!(guild, "Discord slash commands registered"),
        Err(e) => tracing::warn!(error = %e, "Discord slash commands not registered"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[CommandSpec] = &[
        CommandSpec {
            name: "status",
            description: "Show memory",
            argument: None,
        },
        CommandSpec {
            name: "help",
            description: "List the commands",
            argument: None,
        },
        CommandSpec {
            name: "forget",
            description: "not a slash command here",
            argument: Some("what"),
        },
    ];

    #[test]
    fn global_commands_are_user_installable() {
        let p = command_payload(SPECS, true);
        let names: Vec<&str> = p
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["status", "help"]);
        assert_eq!(p[0]["integration_types"], json!([0, 1]));
        assert_eq!(p[0]["contexts"], json!([0, 1, 2]));
        assert_eq!(p[0]["type"], 1);
        let guild = command_payload(SPECS, false);
        assert!(guild[0].get("contexts").is_none());
    }

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
