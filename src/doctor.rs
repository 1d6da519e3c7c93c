//! `anchorbot doctor`: checks the configuration, the data directory and every endpoint, and
//! says what each endpoint serves. With a Slack bot token it also asks Slack who the bot is
//! (`auth.test`), compares the token's granted scopes with [`SLACK_SCOPES`], and says which
//! connection `anchorbot run` will use. With a Discord token it asks Discord who the bot is
//! (`GET /users/@me`, `GET /applications/@me`), says whether the Message Content intent is
//! enabled in the developer portal, and gives the invite URL. Tokens are never printed.

use std::fmt::Write as _;
use std::path::Path;

use secrecy::ExposeSecret;
use serde_json::Value;

use crate::llm::OpenAiEndpoint;
use crate::settings::Settings;
use anchorbot_discord::DiscordSettings;
use anchorbot_slack::SlackSettings;

/// The bot scopes the Slack adapter needs, each with what it is for: the same list as
/// `oauth_config.scopes.bot` in `adapters/slack/manifest.yml`.
pub const SLACK_SCOPES: &[(&str, &str)] = &[
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

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed, passed with a warning, or failed.
    pub state: CheckState,
    /// Details.
    pub detail: String,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    /// It passed.
    Pass,
    /// It passed, with something the operator should know (doctor still exits 0).
    Warn,
    /// It failed (doctor exits 1).
    Fail,
}

impl CheckState {
    /// `Pass` when `ok`, else `Fail`.
    pub fn passes(ok: bool) -> Self {
        if ok {
            Self::Pass
        } else {
            Self::Fail
        }
    }

    /// Whether doctor's exit status stays 0.
    pub fn is_ok(self) -> bool {
        self != Self::Fail
    }

    /// The tag printed before the check's line.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Pass => "[ ok ]",
            Self::Warn => "[warn]",
            Self::Fail => "[FAIL]",
        }
    }
}

/// Runs every check.
pub async fn run(settings: &Settings) -> Vec<Check> {
    let mut checks = vec![data_dir(&settings.data_dir)];
    if settings.store_location().is_database() {
        checks.push(database(settings).await);
    }
    if let Some(path) = &settings.reasoning.tokenizer {
        let name = format!("tokenizer {}", path.display());
        checks.push(match crate::llm::tokens::Tiktoken::from_file(path) {
            Ok(t) => Check {
                name,
                state: CheckState::Pass,
                detail: format!(
                    "loaded; exact budgets ({} tokens in \"hello world\")",
                    t.encode("hello world").len()
                ),
            },
            Err(e) => Check {
                name,
                state: CheckState::Fail,
                detail: e.to_string(),
            },
        });
    }
    checks.extend(document_tools(settings).await);
    let endpoints = settings
        .reasoning
        .with_fallbacks()
        .into_iter()
        .map(|e| ("reasoning", e))
        .chain(
            settings
                .vision
                .with_fallbacks()
                .into_iter()
                .map(|e| ("vision", e)),
        );
    let budget = settings.max_input_tokens + settings.max_output_tokens;
    let tesseract = installed("tesseract", "--version").await;
    for (role, ep) in endpoints {
        if role == "reasoning" && ep.is_embedded() {
            checks.push(embedded_model(&ep, budget).await);
            continue;
        }
        let mut check = endpoint(
            role,
            &ep,
            settings.max_input_tokens,
            settings.max_output_tokens,
        )
        .await;
        // Tesseract reads scans and images without the vision endpoint (more slowly and less
        // well), so a missing one is worth a warning, not a failed set-up.
        if role == "vision" && check.state == CheckState::Fail {
            if tesseract {
                check.state = CheckState::Warn;
                check
                    .detail
                    .push_str("; scans and images are read with tesseract meanwhile");
            } else {
                check.detail.push_str(
                    "; scans and images cannot be read until it is up (or tesseract-ocr is installed)",
                );
            }
        }
        checks.push(check);
    }
    checks.extend(slack(&settings.slack).await);
    checks.extend(discord(&settings.discord).await);
    checks
}

/// Loads the embedded model (`reasoning.url = "embedded"`) and says what it is and what it is
/// for; `budget` is input plus output tokens.
async fn embedded_model(ep: &crate::settings::Endpoint, budget: usize) -> Check {
    let path = ep.embedded_model_path();
    let name = format!("reasoning model (embedded) {}", path.display());
    let file = path.clone();
    let loaded =
        tokio::task::spawn_blocking(move || crate::llm::embedded::EmbeddedModel::load(&file)).await;
    match loaded {
        Ok(Ok(model)) => {
            let context = model.context_length();
            let mut detail = format!(
                "loaded {} (context {context} tokens); it runs on this machine's CPU and is for trying anchorbot out: set reasoning.url (ANCHORBOT_REASONING_URL) to a model server for a team",
                model.name()
            );
            if budget as u64 > context {
                // The engine shrinks the budgets to fit; say so rather than fail.
                let _ = write!(
                    detail,
                    "; max_input_tokens + max_output_tokens ({budget}) are shrunk to fit it"
                );
            }
            Check {
                name,
                state: CheckState::Pass,
                detail,
            }
        }
        Ok(Err(e)) => Check {
            name,
            state: CheckState::Fail,
            detail: format!(
                "{e}; run .ci/setup.sh (it puts SmolLM2-135M-Instruct there), set reasoning.embedded_model, or set reasoning.url (ANCHORBOT_REASONING_URL) to a model server"
            ),
        },
        Err(e) => Check {
            name,
            state: CheckState::Fail,
            detail: format!("loading stopped: {e}"),
        },
    }
}

/// Whether `tool` runs.
async fn installed(tool: &str, arg: &str) -> bool {
    tokio::process::Command::new(tool)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok()
}

/// Checks one endpoint: which server it is, what it serves, the context length that applies
/// (and where it came from), how cut answers are continued, and, when something mismatches,
/// the exact value to set. `input` and `output` are `max_input_tokens` and `max_output_tokens`.
async fn endpoint(
    role: &str,
    ep: &crate::settings::Endpoint,
    input: usize,
    output: usize,
) -> Check {
    use crate::llm::facts::{ResumeWire, ServerKind};
    let client = OpenAiEndpoint::new(ep.clone());
    let name = format!("{role} endpoint {}", ep.url);
    let found = match client.probe().await {
        Ok(found) => found,
        Err(e) => {
            return Check {
                name,
                state: CheckState::Fail,
                detail: e.to_string(),
            }
        }
    };
    let ids: Vec<&str> = found.models.iter().map(|m| m.id.as_str()).collect();
    let mut detail = format!("{}; serves: {}", found.kind.label(), ids.join(", "));
    if role == "reasoning" {
        detail.push_str(&context_advice(&found, input, output));
        detail.push_str(match client.resume_wire() {
            ResumeWire::VllmFlags => "; cut answers are resumed in place (continue_final_message)",
            ResumeWire::FinalAssistant => {
                "; cut answers are resumed in place (the request ends with the partial answer)"
            }
            ResumeWire::None => "; cut answers are continued by instruction",
        });
    }
    let served = ids.contains(&ep.model.as_str());
    let ok = if served {
        true
    } else if found.kind.answers_any_name() {
        let _ = write!(
            detail,
            "; it serves its one model under any name, so {:?} is answered by {}",
            ep.model,
            ids.first().copied().unwrap_or("it")
        );
        true
    } else {
        let first = ids.first().copied().unwrap_or("<a model it serves>");
        let _ = write!(
            detail,
            "; configured model {:?} is not served: set {role}.model = \"{first}\" (or ANCHORBOT_{}_MODEL={first})",
            ep.model,
            role.to_uppercase()
        );
        // A server of unknown kind with one model may answer any name, as before.
        found.kind == ServerKind::Unknown && ids.len() == 1
    };
    Check {
        name,
        state: CheckState::passes(ok),
        detail,
    }
}

/// Which context length applies to the reasoning endpoint, where it came from, and the
/// values to set when `input + output` exceed it.
fn context_advice(found: &crate::llm::facts::EndpointFacts, input: usize, output: usize) -> String {
    let sum = input + output;
    let Some(ctx) = found.context_length.map(|c| c as usize) else {
        let started = if found.kind == crate::llm::facts::ServerKind::LlamaCppPython {
            " (llama-cpp-python's --n_ctx; .ci/local-llm.sh starts it with 4096: set max_input_tokens = 3072 and max_output_tokens = 1024)"
        } else {
            ""
        };
        return format!(
            "; it does not report its context length, so the settings apply: keep max_input_tokens + max_output_tokens ({sum}) within the context it was started with{started}"
        );
    };
    let mut advice = format!("; context {ctx} ({})", found.context_source.describe());
    if sum > ctx {
        // The same split the engine falls back to: output kept unless it leaves no room.
        let out = if output + 256 > ctx {
            (ctx / 4).max(1)
        } else {
            output
        };
        let _ = write!(
            advice,
            "; max_input_tokens + max_output_tokens ({sum}) exceed it and are shrunk per turn: set max_input_tokens = {} and max_output_tokens = {out} (context {ctx})",
            ctx - out
        );
    }
    advice
}

/// Checks what documents need: poppler, tesseract (optional), the embedding model.
async fn document_tools(settings: &Settings) -> Vec<Check> {
    let mut checks = Vec::new();
    for (tool, arg, needed, what) in [
        (
            "pdftotext",
            "-v",
            true,
            "PDF text layers (Debian poppler-utils)",
        ),
        (
            "pdftoppm",
            "-v",
            true,
            "rasterizing scanned pages (Debian poppler-utils)",
        ),
        (
            "tesseract",
            "--version",
            false,
            "OCR fallback (Debian tesseract-ocr)",
        ),
    ] {
        let found = installed(tool, arg).await;
        checks.push(Check {
            name: format!("{tool}: {what}"),
            state: CheckState::passes(found || !needed),
            detail: if found {
                "installed".into()
            } else {
                "not installed; run .ci/setup.sh".into()
            },
        });
    }
    let d = &settings.documents;
    if d.embedder == crate::settings::EmbedderKind::Local {
        let missing: Vec<String> = crate::docs::embed::MODEL_FILES
            .iter()
            .map(|f| d.model_dir.join(f))
            .chain([d.onnxruntime.clone()])
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        checks.push(Check {
            name: format!("embedding model {}", d.model_dir.display()),
            state: CheckState::passes(missing.is_empty()),
            detail: if missing.is_empty() {
                "present (documents can be indexed offline)".into()
            } else {
                format!("missing {}; run .ci/setup.sh", missing.join(", "))
            },
        });
    }
    checks
}

/// How long the database check waits for a connection.
const DATABASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Checks that the database answers (connecting runs its migrations, as the bot's start
/// does), and counts its conversations, the replicas running on it (live liveness leases)
/// and the events accepted and not answered yet. The password is never in the detail.
async fn database(settings: &Settings) -> Check {
    let location = settings.store_location();
    let name = location.describe();
    let check = async {
        let storage = location.open().await?;
        storage.maintenance.ready().await?;
        let conversations = storage.maintenance.sizes().await?.len();
        let replicas = storage
            .leases
            .count(&crate::replica::budget::replica_prefix())
            .await?;
        let waiting = storage.journal.pending().await?.len();
        Ok::<_, crate::storage::StorageError>((conversations, replicas, waiting))
    };
    let (ok, detail) = match tokio::time::timeout(DATABASE_WAIT, check).await {
        Ok(Ok((n, replicas, waiting))) => (
            true,
            format!(
                "connected; schema up to date; {} stored; {} running on it; {} accepted and not answered yet",
                crate::commands::counted(n as u64, "conversation", "conversations"),
                crate::commands::counted(replicas as u64, "replica", "replicas"),
                crate::commands::counted(waiting as u64, "event", "events"),
            ),
        ),
        Ok(Err(e)) => (false, e.to_string()),
        Err(_) => (
            false,
            format!(
                "no answer within {} s; check the host, port and firewall",
                DATABASE_WAIT.as_secs()
            ),
        ),
    };
    // A driver may quote what it was given; the password never leaves in a report.
    let detail = crate::ops::logging::secrets_of(settings)
        .iter()
        .fold(detail, |d, secret| d.replace(secret.as_str(), "[redacted]"));
    Check {
        name,
        state: CheckState::passes(ok),
        detail,
    }
}

/// Checks that the data directory exists (or can be created) and is writable.
fn data_dir(dir: &Path) -> Check {
    let name = format!("data dir {}", dir.display());
    let probe = dir.join(".anchorbot-doctor-probe");
    let result = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&probe, b"ok"))
        .and_then(|_| std::fs::remove_file(&probe));
    match result {
        Ok(()) => {
            let version = if dir.join("db").exists() {
                "store present"
            } else {
                "no store yet"
            };
            Check {
                name,
                state: CheckState::Pass,
                detail: format!("writable; {version}"),
            }
        }
        Err(e) => Check {
            name,
            state: CheckState::Fail,
            detail: format!("not writable: {e}"),
        },
    }
}

/// Checks the Slack app: the bot token and its scopes, and the connection `anchorbot run`
/// will use. Without a bot token, one line says what to set.
async fn slack(s: &SlackSettings) -> Vec<Check> {
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
    let mut cfg = anchorbot_slack::SlackConfig::new(token.to_string().into());
    cfg.api_url = s.api_url.clone();
    let answer = anchorbot_slack::auth::auth_test(&cfg)
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

/// Compares the granted scopes (`x-oauth-scopes`) with [`SLACK_SCOPES`].
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
    let missing: Vec<String> = SLACK_SCOPES
        .iter()
        .filter(|(scope, _)| !granted.iter().any(|g| g == scope))
        .map(|(scope, why)| format!("{scope} ({why})"))
        .collect();
    Check {
        name,
        state: CheckState::passes(missing.is_empty()),
        detail: if missing.is_empty() {
            format!(
                "all {} that anchorbot needs are granted",
                SLACK_SCOPES.len()
            )
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

/// Checks the Discord bot: the token (`GET /users/@me`), the application, its Message
/// Content intent and its installation contexts (`GET /applications/@me`), and the invite URL.
/// Without a token, one line says what to set.
async fn discord(s: &DiscordSettings) -> Vec<Check> {
    let Some(token) = &s.token else {
        return vec![Check {
            name: "Discord".into(),
            state: CheckState::Pass,
            detail: "not configured; set DISCORD_TOKEN (README: \"Discord\")".into(),
        }];
    };
    let mut cfg = anchorbot_discord::DiscordConfig::new(token.clone());
    cfg.api_url = s.api_url.clone();
    let name = format!("Discord bot token (GET /users/@me at {})", cfg.origin());
    let bot = match anchorbot_discord::auth::check(&cfg).await {
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
            anchorbot_discord::auth::INVITE_PERMISSION_NAMES
        ),
    });
    checks
}

/// A failed Discord check, with what to do about it in anchorbot's settings' words.
fn discord_error(e: &anchorbot_discord::auth::AuthError) -> String {
    use anchorbot_discord::auth::AuthError;
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
    use anchorbot_discord::commands::{GUILD_INSTALL, USER_INSTALL};
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
fn message_content(intents: anchorbot_discord::auth::PrivilegedIntents) -> Check {
    use anchorbot_discord::auth::IntentAccess;
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
