//! The Slack part of `anchorbot doctor`: asks Slack who the bot is (`auth.test`), compares the
//! token's granted scopes with [`SCOPES`], and says which connection `anchorbot run` will use.
//! Tokens are never printed.

use anchorbot_platform::doctor::{Check, CheckState, Doctor};
use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::settings::SlackSettings;

/// The bot scopes the Slack adapter needs, each with what it is for: the same list as
/// `oauth_config.scopes.bot` in `adapters/slack/manifest.yml`.
pub const SCOPES: &[(&str, &str)] = &[
    ("app_mentions:read", "hearing @anchorbot mentions"),
    (
        "assistant:write",
        "the assistant split view: its events, status, suggested prompts and titles",
    ),
    (
        "channels:history",
        "follow-ups in public-channel threads, and reading a thread it joins",
    ),
    ("groups:history", "the same in private channels"),
    ("im:history", "direct messages and assistant threads"),
    ("mpim:history", "group DMs"),
    (
        "chat:write",
        "posting, streaming, editing and deleting answers, and private replies",
    ),
    ("commands", "the /anchor slash command"),
    ("files:read", "downloading files shared with it"),
    ("reactions:write", "the working-on-it reaction"),
    (
        "users:read",
        "people's names for the model (users.info), and the asker's team for streaming",
    ),
];

#[async_trait]
impl Doctor for SlackSettings {
    async fn checks(&self) -> Vec<Check> {
        run(self).await
    }
}

/// Checks the Slack app: the bot token and its scopes, and the connection `anchorbot run`
/// will use. Without a bot token, one line says what to set.
async fn run(s: &SlackSettings) -> Vec<Check> {
    let Some(bot) = &s.bot_token else {
        // An app token or signing secret without the bot token means Slack was meant to run.
        let partial = s.app_token.is_some() || s.signing_secret.is_some();
        return vec![Check {
            name: "Slack".into(),
            state: CheckState::passes(!partial),
            detail: format!(
                "{}; set SLACK_BOT_TOKEN and SLACK_APP_TOKEN (Socket Mode), or SLACK_BOT_TOKEN, \
                 SLACK_SIGNING_SECRET and ANCHORBOT_SLACK_LISTEN (Events API over HTTP)",
                if partial {
                    "SLACK_BOT_TOKEN is not set, so Slack will not start"
                } else {
                    "not configured"
                }
            ),
        }];
    };
    let mut checks = Vec::new();
    let name = format!("Slack bot token (auth.test at {})", s.api_url);
    match auth_test(s, bot.expose_secret()).await {
        Ok(auth) => {
            let b = &auth.body;
            let text = |k: &str| b[k].as_str().unwrap_or("?").to_string();
            let is_bot = b["bot_id"].as_str().is_some_and(|id| !id.is_empty());
            let mut detail = format!(
                "workspace \"{}\" ({}, {}); bot user @{} ({})",
                text("team"),
                text("team_id"),
                text("url"),
                text("user"),
                text("user_id")
            );
            if !is_bot {
                detail.push_str(
                    "; this is not a bot token: use the Bot User OAuth Token (xoxb-…) from \
                     OAuth & Permissions",
                );
            }
            checks.push(Check {
                name,
                state: CheckState::passes(is_bot),
                detail,
            });
            checks.push(scopes(auth.scopes));
        }
        Err(detail) => checks.push(Check {
            name,
            state: CheckState::Fail,
            detail,
        }),
    }
    checks.push(slack_connection(s));
    checks
}

/// What `auth.test` said: its JSON body, and the granted scopes or why they are unknown.
struct AuthTest {
    body: Value,
    scopes: Result<Vec<String>, &'static str>,
}

/// Calls `auth.test` with the bot token (through the Slack adapter's client, HTTP or HTTPS);
/// `Err` says why it failed, without the token.
async fn auth_test(s: &SlackSettings, token: &str) -> Result<AuthTest, String> {
    let mut cfg = crate::SlackConfig::new(token.to_string().into());
    cfg.api_url = s.api_url.clone();
    let answer = crate::auth::auth_test(&cfg)
        .await
        .map_err(|e| e.to_string())?;
    let body = answer.body;
    if body["ok"] != true {
        return Err(auth_error(
            body["error"].as_str().unwrap_or("unknown_error"),
        ));
    }
    Ok(AuthTest {
        body,
        scopes: answer.scopes.ok_or("Slack sent no x-oauth-scopes header"),
    })
}

/// A failed `auth.test`'s error code, with what to do about it.
fn auth_error(code: &str) -> String {
    let hint = match code {
        "invalid_auth" | "not_authed" | "token_revoked" | "token_expired" | "account_inactive" => {
            "; Slack rejected SLACK_BOT_TOKEN: copy the Bot User OAuth Token (xoxb-…) from \
             OAuth & Permissions, and reinstall the app if it was removed"
        }
        _ => "",
    };
    format!("{code}{hint}")
}

/// Compares the granted scopes (`x-oauth-scopes`) with [`SCOPES`].
fn scopes(granted: Result<Vec<String>, &'static str>) -> Check {
    let name = "Slack scopes".to_string();
    let granted = match granted {
        Ok(granted) => granted,
        Err(why) => {
            return Check {
                name,
                state: CheckState::Pass,
                detail: format!("not checked: {why}"),
            }
        }
    };
    let missing: Vec<String> = SCOPES
        .iter()
        .filter(|(scope, _)| !granted.iter().any(|g| g == scope))
        .map(|(scope, why)| format!("{scope} ({why})"))
        .collect();
    Check {
        name,
        state: CheckState::passes(missing.is_empty()),
        detail: if missing.is_empty() {
            format!("all {} that anchorbot needs are granted", SCOPES.len())
        } else {
            format!(
                "missing {}; add them under OAuth & Permissions → Scopes (or paste \
                 adapters/slack/manifest.yml into App Manifest), then reinstall the app",
                missing.join(", ")
            )
        },
    }
}

/// Which connection `anchorbot run` will use, and what is missing for it.
fn slack_connection(s: &SlackSettings) -> Check {
    let name = "Slack connection".to_string();
    if let Some(app) = &s.app_token {
        if !app.expose_secret().starts_with("xapp-") {
            return Check {
                name,
                state: CheckState::Fail,
                detail: "SLACK_APP_TOKEN is not an app-level token (xapp-…); generate one under \
                         Basic Information → App-Level Tokens with the connections:write scope"
                    .into(),
            };
        }
        let mut detail = String::from("Socket Mode (SLACK_APP_TOKEN is set); no public URL needed");
        if s.signing_secret.is_some() || s.listen.is_some() {
            detail.push_str(
                "; SLACK_SIGNING_SECRET and ANCHORBOT_SLACK_LISTEN are unused while an app \
                 token is set",
            );
        }
        return Check {
            name,
            state: CheckState::Pass,
            detail,
        };
    }
    let (ok, detail) = match (&s.signing_secret, &s.listen) {
        (Some(_), Some(listen)) => match listen.parse::<std::net::SocketAddr>() {
            Ok(_) => (
                true,
                format!(
                    "Events API over HTTP on {listen}; Slack's request URLs are \
                     https://YOUR-HOST/slack/events, /slack/commands and /slack/interactivity, \
                     and Socket Mode must be off in the app's settings"
                ),
            ),
            Err(_) => (
                false,
                format!(
                    "ANCHORBOT_SLACK_LISTEN = {listen:?} is not an address such as 0.0.0.0:3000"
                ),
            ),
        },
        (Some(_), None) => (
            false,
            "the Events API over HTTP also needs ANCHORBOT_SLACK_LISTEN (e.g. 0.0.0.0:3000); \
             or set SLACK_APP_TOKEN for Socket Mode"
                .into(),
        ),
        (None, Some(_)) => (
            false,
            "the Events API over HTTP also needs SLACK_SIGNING_SECRET (Basic Information → \
             App Credentials); or set SLACK_APP_TOKEN for Socket Mode"
                .into(),
        ),
        (None, None) => (
            false,
            "no way to receive events: set SLACK_APP_TOKEN (Socket Mode), or \
             SLACK_SIGNING_SECRET and ANCHORBOT_SLACK_LISTEN (Events API over HTTP)"
                .into(),
        ),
    };
    Check {
        name,
        state: CheckState::passes(ok),
        detail,
    }
}
