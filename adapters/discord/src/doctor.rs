//! The Discord part of `anchorbot doctor`: asks Discord who the bot is (`GET /users/@me`,
//! `GET /applications/@me`), says whether the Message Content intent is enabled in the
//! developer portal and which installation contexts are, and gives the invite URL. The token
//! is never printed.

use anchorbot_platform::doctor::{Check, CheckState, Doctor};
use async_trait::async_trait;

use crate::settings::DiscordSettings;

#[async_trait]
impl Doctor for DiscordSettings {
    async fn checks(&self) -> Vec<Check> {
        run(self).await
    }
}

/// Checks the Discord bot: the token (`GET /users/@me`), the application, its Message
/// Content intent and its installation contexts (`GET /applications/@me`), and the invite URL.
/// Without a token, one line says what to set.
async fn run(s: &DiscordSettings) -> Vec<Check> {
    let Some(token) = &s.token else {
        return vec![Check {
            name: "Discord".into(),
            state: CheckState::Pass,
            detail: "not configured; set DISCORD_TOKEN (README: \"Discord\")".into(),
        }];
    };
    let mut cfg = crate::DiscordConfig::new(token.clone());
    cfg.api_url = s.api_url.clone();
    let name = format!("Discord bot token (GET /users/@me at {})", cfg.origin());
    let bot = match crate::auth::check(&cfg).await {
        Ok(bot) => bot,
        Err(e) => {
            return vec![Check {
                name,
                state: CheckState::Fail,
                detail: discord_error(&e),
            }]
        }
    };
    let mut detail = format!(
        "bot user @{} ({}); application \"{}\" ({})",
        bot.username, bot.user_id, bot.application_name, bot.application_id
    );
    if !bot.is_bot {
        detail.push_str(
            "; this is not a bot user: use the token from the Developer Portal → your app → Bot",
        );
    }
    let mut checks = vec![
        Check {
            name,
            state: CheckState::passes(bot.is_bot),
            detail,
        },
        message_content(bot.intents()),
        install_contexts(bot.integration_types.as_deref()),
    ];
    checks.push(Check {
        name: "Discord invite URL".into(),
        state: CheckState::Pass,
        detail: format!(
            "{} ({})",
            bot.invite_url(),
            crate::auth::INVITE_PERMISSION_NAMES
        ),
    });
    checks
}

/// A failed Discord check, with what to do about it in anchorbot's settings' words.
fn discord_error(e: &crate::auth::AuthError) -> String {
    use crate::auth::AuthError;
    let hint = match e {
        AuthError::Unauthorized | AuthError::MalformedToken => " as DISCORD_TOKEN",
        AuthError::Unreachable { .. } => {
            "; check the network, and ANCHORBOT_DISCORD_API_URL (discord.api_url) if it is set"
        }
        AuthError::RateLimited { .. } | AuthError::Unexpected { .. } => "",
    };
    format!("{e}{hint}")
}

/// The installation contexts the application has enabled, which its slash commands are
/// registered for: Guild Install is needed (the invite adds the bot to a server with it);
/// User Install adds the commands in other DMs and group DMs.
fn install_contexts(types: Option<&[u64]>) -> Check {
    use crate::commands::{GUILD_INSTALL, USER_INSTALL};
    const WHERE: &str = "Developer Portal → your app → Installation → Installation Contexts";
    let name = "Discord installation contexts".to_string();
    let Some(types) = types else {
        return Check {
            name,
            state: CheckState::Pass,
            detail: "Discord did not list them (no integration_types_config); slash commands \
                 are registered with Discord's defaults, the application's own"
                .into(),
        };
    };
    let (guild, user) = (
        types.contains(&GUILD_INSTALL),
        types.contains(&USER_INSTALL),
    );
    let (ok, detail) = match (guild, user) {
        (true, true) => (
            true,
            "Guild Install and User Install enabled; slash commands are registered for both: \
                 in servers, in DMs with the bot, and in other DMs and group DMs"
                .to_string(),
        ),
        (true, false) => (
            true,
            format!(
                "Guild Install enabled, User Install off; slash commands are registered for \
                 Guild Install only: in servers and in DMs with the bot (to offer them in other \
                 DMs too, tick User Install in the {WHERE})"
            ),
        ),
        (false, true) => (
            false,
            format!(
                "only User Install is enabled: the bot cannot be added to a server (the invite \
                 URL below needs Guild Install), and slash commands are registered for DMs \
                 only; tick Guild Install in the {WHERE}, and save"
            ),
        ),
        (false, false) => (
            false,
            format!(
                "no installation context is enabled, so the bot cannot be installed anywhere \
                 and Discord refuses its slash commands; tick Guild Install in the {WHERE}, \
                 and save"
            ),
        ),
    };
    Check {
        name,
        state: CheckState::passes(ok),
        detail,
    }
}

/// Whether the Message Content intent is on: without it, guild messages that do not mention
/// the bot arrive empty. The other privileged intents are listed but not needed.
fn message_content(intents: crate::auth::PrivilegedIntents) -> Check {
    use crate::auth::IntentAccess;
    let state = |a: IntentAccess| match a {
        IntentAccess::Off => "off",
        IntentAccess::Limited => "on",
        IntentAccess::Approved => "approved",
    };
    let others = format!(
        "Presence {}, Server Members {} (anchorbot needs neither)",
        state(intents.presence),
        state(intents.guild_members)
    );
    let detail = match intents.message_content {
        IntentAccess::Approved => format!("enabled (approved for a verified app); {others}"),
        IntentAccess::Limited => format!(
            "enabled (the portal toggle: enough below 100 servers, Discord asks for \
             verification beyond); {others}"
        ),
        IntentAccess::Off => format!(
            "NOT enabled: guild messages that do not mention the bot arrive empty, so follow-ups \
             in threads go unanswered; turn it on in the Developer Portal → your app → Bot → \
             Privileged Gateway Intents → Message Content Intent, and save; {others}"
        ),
    };
    Check {
        name: "Discord Message Content intent".into(),
        state: CheckState::passes(intents.message_content.is_enabled()),
        detail,
    }
}
