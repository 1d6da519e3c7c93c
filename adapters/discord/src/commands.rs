//! The slash commands, registered for the installation contexts the application supports.
//!
//! Discord allows a global command only the installation contexts (`integration_types`)
//! enabled for the application in the Developer Portal, which `GET /applications/@me` lists in
//! `integration_types_config` ("0" Guild Install, "1" User Install). The interaction contexts
//! (`contexts`) follow from them:
//! - Guild Install: servers (0), and DMs with the bot (1), which anyone in a server with the
//!   bot can open;
//! - User Install: DMs with the bot (1) and other DMs and group DMs (2), where only a
//!   user-installed app can be reached.
//!
//! A bulk overwrite (`PUT`) is all or nothing: when Discord refuses it, the commands are
//! created one at a time (`POST`, which replaces a command of the same name), and each refusal
//! is reported with the command's name and Discord's error, so one refused command does not
//! take the others with it. Guild commands (`guild_id` set) carry neither field: Discord reads
//! them on global commands only.

use anchorbot_platform::{CommandSpec, PlatformError};
use reqwest::Method;
use serde_json::{json, Value};

use crate::rest::Rest;

/// The commands registered as slash commands (the engine's others stay text-only).
pub const SLASH_COMMANDS: [&str; 4] = ["status", "files", "clear", "help"];
/// Discord's limit on a command description.
const DESCRIPTION_CHARS: usize = 100;
/// Attempts at a call Discord answers 429 (the REST layer waits out the hold in between).
const ATTEMPTS: usize = 3;

/// Installation context: installed to a server.
pub const GUILD_INSTALL: u64 = 0;
/// Installation context: installed to a user.
pub const USER_INSTALL: u64 = 1;
/// Interaction context: a server channel.
pub const CONTEXT_GUILD: u64 = 0;
/// Interaction context: a DM with the bot.
pub const CONTEXT_BOT_DM: u64 = 1;
/// Interaction context: another DM or a group DM.
pub const CONTEXT_PRIVATE_CHANNEL: u64 = 2;

/// The installation contexts in an application object's `integration_types_config`, sorted;
/// `None` when the object has no such field.
pub fn install_types(application: &Value) -> Option<Vec<u64>> {
    let config = application.get("integration_types_config")?.as_object()?;
    let mut types: Vec<u64> = config.keys().filter_map(|k| k.parse().ok()).collect();
    types.sort_unstable();
    types.dedup();
    Some(types)
}

/// The interaction contexts commands can be used in, given the installation contexts.
pub fn contexts_for(install: &[u64]) -> Vec<u64> {
    let mut contexts = Vec::new();
    if install.contains(&GUILD_INSTALL) {
        contexts.extend([CONTEXT_GUILD, CONTEXT_BOT_DM]);
    }
    if install.contains(&USER_INSTALL) {
        contexts.extend([CONTEXT_BOT_DM, CONTEXT_PRIVATE_CHANNEL]);
    }
    contexts.sort_unstable();
    contexts.dedup();
    contexts
}

/// Where commands are registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// In one guild (instant; no installation contexts).
    Guild(u64),
    /// Globally, for these installation contexts; `None` leaves them to Discord's default
    /// (the application's own), when they could not be read.
    Global(Option<Vec<u64>>),
}

impl Scope {
    /// The scope, with an empty list of installation contexts taken as unknown.
    fn filter_empty(self) -> Self {
        match self {
            Self::Global(Some(t)) if t.is_empty() => Self::Global(None),
            other => other,
        }
    }
}

/// The slash commands among `commands`, as Discord's command objects for `scope`.
pub fn payload(commands: &[CommandSpec], scope: &Scope) -> Vec<Value> {
    commands
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
            // An empty list is not valid: then Discord's default applies, as with none.
            if let Scope::Global(Some(install)) = scope.clone().filter_empty() {
                cmd["integration_types"] = json!(install);
                cmd["contexts"] = json!(contexts_for(&install));
            }
            cmd
        })
        .collect()
}

/// What registration achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// The commands Discord accepted.
    pub registered: Vec<String>,
    /// The commands Discord refused, with its error.
    pub refused: Vec<(String, String)>,
    /// The bulk overwrite was refused and the commands were sent one at a time.
    pub one_by_one: bool,
}

/// Reads the application's installation contexts and registers the slash commands for them:
/// in `guild`, or globally.
pub async fn register(
    rest: &Rest,
    application: u64,
    guild: Option<u64>,
    commands: &[CommandSpec],
) -> Registration {
    let scope = match guild {
        Some(g) => Scope::Guild(g),
        None => Scope::Global(application_install_types(rest).await),
    };
    register_payload(rest, application, guild, payload(commands, &scope)).await
}

/// The application's installation contexts, or `None` (logged) when they cannot be read.
async fn application_install_types(rest: &Rest) -> Option<Vec<u64>> {
    match call(rest, Method::GET, "/applications/@me", None).await {
        Ok(app) => {
            let types = install_types(&app);
            match &types {
                Some(t) if t.is_empty() => tracing::error!(
                    "the Discord application has no installation context enabled; enable Guild \
                     Install in the Developer Portal → your app → Installation → Installation \
                     Contexts"
                ),
                Some(t) => tracing::info!(
                    integration_types = ?t,
                    "Discord slash commands follow the application's installation contexts"
                ),
                None => tracing::warn!(
                    "Discord's application has no integration_types_config; commands take \
                     Discord's default installation contexts"
                ),
            }
            types
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                "could not read the Discord application's installation contexts; commands take \
                 Discord's default"
            );
            None
        }
    }
}

/// Registers `commands` (command objects) by bulk overwrite, then one at a time if Discord
/// refuses the overwrite.
pub async fn register_payload(
    rest: &Rest,
    application: u64,
    guild: Option<u64>,
    commands: Vec<Value>,
) -> Registration {
    let path = match guild {
        Some(g) => format!("/applications/{application}/guilds/{g}/commands"),
        None => format!("/applications/{application}/commands"),
    };
    let names: Vec<String> = commands
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect();
    let mut report = Registration::default();
    match call(rest, Method::PUT, &path, Some(&json!(commands))).await {
        Ok(_) => {
            tracing::info!(guild, commands = ?names, "Discord slash commands registered");
            report.registered = names;
            return report;
        }
        Err(PlatformError::Rejected(e)) => tracing::warn!(
            error = %e,
            "Discord refused the slash commands' bulk overwrite; registering them one at a time"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "Discord slash commands not registered");
            report.refused = names.into_iter().map(|n| (n, e.to_string())).collect();
            return report;
        }
    }
    report.one_by_one = true;
    for (cmd, name) in commands.iter().zip(names) {
        match call(rest, Method::POST, &path, Some(cmd)).await {
            Ok(_) => report.registered.push(name),
            Err(e) => {
                tracing::warn!(command = %name, error = %e, "Discord refused the slash command");
                report.refused.push((name, e.to_string()));
            }
        }
    }
    tracing::info!(
        guild,
        registered = ?report.registered,
        refused = report.refused.len(),
        "Discord slash commands registered one at a time"
    );
    report
}

/// A call, sent again after a 429's hold (up to [`ATTEMPTS`] times).
async fn call(
    rest: &Rest,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, PlatformError> {
    let mut attempt = 1;
    loop {
        match rest.call(method.clone(), path, body).await {
            Err(PlatformError::RateLimited { .. }) if attempt < ATTEMPTS => attempt += 1,
            other => return other,
        }
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
    fn contexts_follow_the_installation_contexts() {
        assert_eq!(contexts_for(&[GUILD_INSTALL]), [0, 1]);
        assert_eq!(contexts_for(&[USER_INSTALL]), [1, 2]);
        assert_eq!(contexts_for(&[GUILD_INSTALL, USER_INSTALL]), [0, 1, 2]);
        assert!(contexts_for(&[]).is_empty());
    }

    #[test]
    fn the_installation_contexts_are_read_from_the_application() {
        let app =
            json!({"integration_types_config": {"1": {}, "0": {"oauth2_install_params": {}}}});
        assert_eq!(install_types(&app), Some(vec![0, 1]));
        assert_eq!(
            install_types(&json!({"integration_types_config": {}})),
            Some(vec![])
        );
        assert_eq!(install_types(&json!({"id": "1"})), None);
    }

    #[test]
    fn global_commands_carry_the_applications_contexts_and_guild_ones_none() {
        let p = payload(SPECS, &Scope::Global(Some(vec![GUILD_INSTALL])));
        let names: Vec<&str> = p.iter().filter_map(|c| c["name"].as_str()).collect();
        assert_eq!(names, ["status", "help"]);
        assert_eq!(p[0]["integration_types"], json!([0]));
        assert_eq!(p[0]["contexts"], json!([0, 1]));
        assert_eq!(p[0]["type"], 1);
        let unknown = payload(SPECS, &Scope::Global(None));
        assert!(unknown[0].get("integration_types").is_none());
        assert!(unknown[0].get("contexts").is_none());
        let none_enabled = payload(SPECS, &Scope::Global(Some(vec![])));
        assert!(none_enabled[0].get("integration_types").is_none());
        let guild = payload(SPECS, &Scope::Guild(7));
        assert!(guild[0].get("contexts").is_none());
    }
}
