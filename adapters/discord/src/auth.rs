//! The bot check `anchorbot doctor` runs: who the token belongs to (`GET /users/@me`), its
//! application (`GET /applications/@me`), which privileged gateway intents the developer portal
//! has turned on (the application's `flags`), which installation contexts it has enabled
//! (`integration_types_config`, which the slash commands are registered for), and the invite
//! URL for that application.
//!
//! The token goes only into the `Authorization` header, marked sensitive; no error, log line or
//! `Debug` output holds it. Every call has a 10 s limit, so an unreachable Discord is reported
//! instead of waited for.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::settings::DEFAULT_API_URL;
use crate::DiscordConfig;

/// How long each of the two calls may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Application flags (Discord's `ApplicationFlags`) that say which privileged gateway intents
/// the application may use. A plain bit is the verified app's approval (for bots in 100 or more
/// servers); a `_LIMITED` bit is the portal toggle (for bots in fewer than 100 servers).
pub mod flags {
    /// Presence intent, approved.
    pub const GATEWAY_PRESENCE: u64 = 1 << 12;
    /// Presence intent, the portal toggle.
    pub const GATEWAY_PRESENCE_LIMITED: u64 = 1 << 13;
    /// Server members intent, approved.
    pub const GATEWAY_GUILD_MEMBERS: u64 = 1 << 14;
    /// Server members intent, the portal toggle.
    pub const GATEWAY_GUILD_MEMBERS_LIMITED: u64 = 1 << 15;
    /// Message content intent, approved.
    pub const GATEWAY_MESSAGE_CONTENT: u64 = 1 << 18;
    /// Message content intent, the portal toggle.
    pub const GATEWAY_MESSAGE_CONTENT_LIMITED: u64 = 1 << 19;
}

/// Discord permission bits the bot is invited with (Discord's `Permissions`).
pub mod permissions {
    /// View Channels.
    pub const VIEW_CHANNEL: u64 = 1 << 10;
    /// Send Messages.
    pub const SEND_MESSAGES: u64 = 1 << 11;
    /// Read Message History.
    pub const READ_MESSAGE_HISTORY: u64 = 1 << 16;
    /// Create Public Threads.
    pub const CREATE_PUBLIC_THREADS: u64 = 1 << 35;
    /// Send Messages in Threads.
    pub const SEND_MESSAGES_IN_THREADS: u64 = 1 << 38;
}

/// The permissions the adapter uses and no more (309237713920, the README's integer).
pub const INVITE_PERMISSIONS: u64 = permissions::VIEW_CHANNEL
    | permissions::SEND_MESSAGES
    | permissions::SEND_MESSAGES_IN_THREADS
    | permissions::CREATE_PUBLIC_THREADS
    | permissions::READ_MESSAGE_HISTORY;

/// [`INVITE_PERMISSIONS`] as the portal names them.
pub const INVITE_PERMISSION_NAMES: &str = "View Channels, Send Messages, Send Messages in \
     Threads, Create Public Threads, Read Message History";

/// The OAuth2 scopes of the invite: the bot user, and its slash commands.
pub const INVITE_SCOPES: &str = "bot+applications.commands";

/// The URL that adds application `application_id` to a server with [`INVITE_SCOPES`] and
/// [`INVITE_PERMISSIONS`]. It is always Discord's own site, whatever `api_url` says.
pub fn invite_url(application_id: &str) -> String {
    format!(
        "{DEFAULT_API_URL}/oauth2/authorize?client_id={application_id}&scope={INVITE_SCOPES}\
         &permissions={INVITE_PERMISSIONS}"
    )
}

/// Whether the application may use one privileged intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentAccess {
    /// Off: Discord withholds what the intent covers.
    Off,
    /// On through the portal toggle; enough while the bot is in fewer than 100 servers, after
    /// which Discord requires verification.
    Limited,
    /// On, approved for a verified application.
    Approved,
}

impl IntentAccess {
    /// The access that `flags` grants through the `approved` and `limited` bits.
    fn from_bits(flags: u64, approved: u64, limited: u64) -> Self {
        if flags & approved != 0 {
            Self::Approved
        } else if flags & limited != 0 {
            Self::Limited
        } else {
            Self::Off
        }
    }

    /// Whether the intent can be used at all.
    pub fn is_enabled(self) -> bool {
        self != Self::Off
    }
}

/// The privileged gateway intents, as the application's flags grant them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivilegedIntents {
    /// Presence updates (anchorbot does not use them).
    pub presence: IntentAccess,
    /// Server member events (anchorbot does not use them).
    pub guild_members: IntentAccess,
    /// Message content in guilds: anchorbot needs it, or follow-ups arrive empty.
    pub message_content: IntentAccess,
}

impl PrivilegedIntents {
    /// Decodes the application's `flags`.
    pub fn from_flags(bits: u64) -> Self {
        Self {
            presence: IntentAccess::from_bits(
                bits,
                flags::GATEWAY_PRESENCE,
                flags::GATEWAY_PRESENCE_LIMITED,
            ),
            guild_members: IntentAccess::from_bits(
                bits,
                flags::GATEWAY_GUILD_MEMBERS,
                flags::GATEWAY_GUILD_MEMBERS_LIMITED,
            ),
            message_content: IntentAccess::from_bits(
                bits,
                flags::GATEWAY_MESSAGE_CONTENT,
                flags::GATEWAY_MESSAGE_CONTENT_LIMITED,
            ),
        }
    }
}

/// What Discord said about the token's bot and its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotCheck {
    /// The bot user's id.
    pub user_id: String,
    /// The bot user's name.
    pub username: String,
    /// Whether the user is a bot (`bot: true`).
    pub is_bot: bool,
    /// The application's id (the invite's `client_id`).
    pub application_id: String,
    /// The application's name.
    pub application_name: String,
    /// The application's flags.
    pub flags: u64,
    /// The installation contexts enabled (0 Guild Install, 1 User Install), sorted; `None`
    /// when Discord's answer did not list them.
    pub integration_types: Option<Vec<u64>>,
}

impl BotCheck {
    /// The privileged intents the application's flags grant.
    pub fn intents(&self) -> PrivilegedIntents {
        PrivilegedIntents::from_flags(self.flags)
    }

    /// The invite URL for this application.
    pub fn invite_url(&self) -> String {
        invite_url(&self.application_id)
    }
}

/// Why the check failed, with what to do about it; never holds the token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// HTTP 401: the token is wrong, or was reset or revoked.
    #[error(
        "Discord refused the token (HTTP 401): it is invalid, or it was reset or revoked; reset \
         the token in the portal (Developer Portal → your app → Bot → Reset Token) and use the \
         new one"
    )]
    Unauthorized,
    /// The token holds characters no HTTP header may carry.
    #[error(
        "the token holds characters no HTTP header may carry (a line break or another control character?); \
         copy it again, or reset it in the portal (Bot → Reset Token) and use the new one"
    )]
    MalformedToken,
    /// No connection, a timeout, or TLS trouble.
    #[error("cannot reach Discord at {base}: {reason}")]
    Unreachable {
        /// The origin that was called (`api_url`).
        base: String,
        /// What failed.
        reason: String,
    },
    /// HTTP 429.
    #[error("Discord is rate limiting these calls; try again in {:.1} s", retry_after.as_secs_f64())]
    RateLimited {
        /// How long Discord asked to wait.
        retry_after: Duration,
    },
    /// Any other answer than the one expected.
    #[error("GET {path} answered HTTP {status}: {detail}")]
    Unexpected {
        /// The path below `/api/v10`.
        path: String,
        /// HTTP status.
        status: u16,
        /// Discord's message, or what is wrong with the answer.
        detail: String,
    },
}

/// Asks Discord who `cfg.token` belongs to and how its application is set up.
pub async fn check(cfg: &DiscordConfig) -> Result<BotCheck, AuthError> {
    check_within(cfg, TIMEOUT).await
}

/// [`check`] with each call limited to `timeout`.
async fn check_within(cfg: &DiscordConfig, timeout: Duration) -> Result<BotCheck, AuthError> {
    let base = cfg.origin().to_string();
    let client = client(cfg, timeout, &base)?;
    let user = get(&client, cfg, "/users/@me", timeout).await?;
    let app = get(&client, cfg, "/applications/@me", timeout).await?;
    let text = |v: &Value, path: &str, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| malformed(path, &format!("no \"{key}\"")))
    };
    let application_id = text(&app, "/applications/@me", "id")?;
    // The id goes into the invite URL: it must be a snowflake, not arbitrary text.
    if application_id.is_empty() || !application_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(
            "/applications/@me",
            "the application id is not a snowflake",
        ));
    }
    Ok(BotCheck {
        user_id: text(&user, "/users/@me", "id")?,
        username: text(&user, "/users/@me", "username")?,
        is_bot: user.get("bot").and_then(Value::as_bool).unwrap_or(false),
        application_id,
        application_name: text(&app, "/applications/@me", "name")?,
        flags: app
            .get("flags")
            .and_then(Value::as_u64)
            .ok_or_else(|| malformed("/applications/@me", "no \"flags\""))?,
        integration_types: crate::commands::install_types(&app),
    })
}

/// A 200 answer that is not what Discord sends.
fn malformed(path: &str, detail: &str) -> AuthError {
    AuthError::Unexpected {
        path: path.to_string(),
        status: 200,
        detail: format!("{detail} in the answer; is api_url Discord?"),
    }
}

/// A client that sends `Authorization: Bot <token>` and follows no redirects.
fn client(
    cfg: &DiscordConfig,
    timeout: Duration,
    base: &str,
) -> Result<reqwest::Client, AuthError> {
    let mut auth = HeaderValue::from_str(&format!("Bot {}", cfg.token.expose_secret().trim()))
        .map_err(|_| AuthError::MalformedToken)?;
    auth.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, auth);
    reqwest::Client::builder()
        .default_headers(headers)
        // A redirect would carry the token to wherever it points.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .user_agent(concat!(
            "DiscordBot (https://github.com/anchorbot, ",
            env!("CARGO_PKG_VERSION"),
            ")"
        ))
        .build()
        .map_err(|e| AuthError::Unreachable {
            base: base.to_string(),
            reason: format!("the HTTP client could not be built: {}", e.without_url()),
        })
}

/// `GET {api_base}{path}`: its JSON, or why not.
async fn get(
    client: &reqwest::Client,
    cfg: &DiscordConfig,
    path: &str,
    timeout: Duration,
) -> Result<Value, AuthError> {
    let unreachable = |e: reqwest::Error| AuthError::Unreachable {
        base: cfg.origin().to_string(),
        reason: transport_reason(&e, timeout),
    };
    let response = client
        .get(format!("{}{path}", cfg.api_base()))
        .timeout(timeout)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.map_err(unreachable)?;
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    match status {
        StatusCode::OK => body.ok_or_else(|| malformed(path, "no JSON")),
        StatusCode::UNAUTHORIZED => Err(AuthError::Unauthorized),
        StatusCode::TOO_MANY_REQUESTS => Err(AuthError::RateLimited {
            retry_after: crate::limits::retry_after(
                &headers,
                body.as_ref().unwrap_or(&Value::Null),
            ),
        }),
        _ => Err(AuthError::Unexpected {
            path: path.to_string(),
            status: status.as_u16(),
            detail: body
                .as_ref()
                .and_then(|b| b.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("no message from Discord")
                .to_string(),
        }),
    }
}

/// What went wrong on the wire, in words: the innermost cause (reqwest's own text is only
/// "error sending request"), without the URL.
fn transport_reason(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", timeout.as_secs_f64());
    }
    let mut innermost = None;
    let mut cause = std::error::Error::source(e);
    while let Some(inner) = cause {
        innermost = Some(inner);
        cause = inner.source();
    }
    match innermost {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use secrecy::SecretString;
    use serde_json::json;
    use serenity::all::Permissions;

    use super::*;

    const TOKEN: &str = "MTIz.unit-test-secret-token";

    /// The flags the fake Discord in the app's tests sends: both `_LIMITED` toggles for
    /// presence and members, and APPLICATION_COMMAND_BADGE.
    const BASE_FLAGS: u64 = (1 << 13) | (1 << 15) | (1 << 23);

    #[test]
    fn flags_decode_into_intents() {
        let none = PrivilegedIntents::from_flags(BASE_FLAGS);
        assert_eq!(none.presence, IntentAccess::Limited);
        assert_eq!(none.guild_members, IntentAccess::Limited);
        assert_eq!(none.message_content, IntentAccess::Off);
        assert!(!none.message_content.is_enabled());

        let limited = PrivilegedIntents::from_flags(BASE_FLAGS | (1 << 19));
        assert_eq!(limited.message_content, IntentAccess::Limited);
        assert!(limited.message_content.is_enabled());

        let approved = PrivilegedIntents::from_flags((1 << 12) | (1 << 14) | (1 << 18));
        assert_eq!(
            approved,
            PrivilegedIntents {
                presence: IntentAccess::Approved,
                guild_members: IntentAccess::Approved,
                message_content: IntentAccess::Approved,
            }
        );
        let both = PrivilegedIntents::from_flags((1 << 18) | (1 << 19));
        assert_eq!(both.message_content, IntentAccess::Approved);

        // Neighbouring bits (VERIFICATION_PENDING_GUILD_LIMIT, EMBEDDED) are not intents.
        let other = PrivilegedIntents::from_flags((1 << 16) | (1 << 17) | (1 << 20));
        assert_eq!(other.message_content, IntentAccess::Off);
        assert_eq!(PrivilegedIntents::from_flags(0).presence, IntentAccess::Off);
    }

    #[test]
    fn the_invite_is_the_readmes() {
        assert_eq!(INVITE_PERMISSIONS, 309_237_713_920);
        let serenity = Permissions::VIEW_CHANNEL
            | Permissions::SEND_MESSAGES
            | Permissions::SEND_MESSAGES_IN_THREADS
            | Permissions::CREATE_PUBLIC_THREADS
            | Permissions::READ_MESSAGE_HISTORY;
        assert_eq!(serenity.bits(), INVITE_PERMISSIONS);
        assert_eq!(
            invite_url("1200000000000000001"),
            "https://discord.com/oauth2/authorize?client_id=1200000000000000001\
             &scope=bot+applications.commands&permissions=309237713920"
        );
    }

    /// One canned answer: status, extra header lines, body.
    type Answer = (u16, &'static str, String);
    /// The requests a test server saw: path and `Authorization` header.
    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    /// A one-thread HTTP server on 127.0.0.1 that answers each request (one per connection)
    /// with `answer(path, authorization)`; returns its origin and the requests it saw.
    fn serve(answer: impl Fn(&str, &str) -> Answer + Send + 'static) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let mut authorization = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("authorization") {
                            authorization = v.trim().to_string();
                        }
                    }
                }
                let (status, extra, body) = answer(&path, &authorization);
                log.lock().expect("log").push((path, authorization));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (origin, seen)
    }

    /// A config for `TOKEN` at `origin`.
    fn cfg(origin: &str) -> DiscordConfig {
        let mut cfg = DiscordConfig::new(SecretString::from(TOKEN));
        cfg.api_url = format!("{origin}/");
        cfg
    }

    /// Discord's answers for a bot with `flags`.
    fn discord(flags: u64) -> impl Fn(&str, &str) -> Answer {
        move |path, auth| {
            if auth != format!("Bot {TOKEN}") {
                return (
                    401,
                    "",
                    json!({"message": "401: Unauthorized", "code": 0}).to_string(),
                );
            }
            match path {
                "/api/v10/users/@me" => (
                    200,
                    "",
                    json!({"id": "42", "username": "anchorbot", "bot": true}).to_string(),
                ),
                "/api/v10/applications/@me" => (
                    200,
                    "",
                    json!({"id": "4242", "name": "Anchor", "flags": flags,
                           "integration_types_config": {"0": {}}})
                    .to_string(),
                ),
                _ => (404, "", json!({"message": "404: Not Found"}).to_string()),
            }
        }
    }

    #[tokio::test]
    async fn a_good_token_names_the_bot_and_its_application() {
        let (origin, seen) = serve(discord(BASE_FLAGS | flags::GATEWAY_MESSAGE_CONTENT_LIMITED));
        let bot = check(&cfg(&origin)).await.expect("check");
        assert_eq!(
            bot,
            BotCheck {
                user_id: "42".into(),
                username: "anchorbot".into(),
                is_bot: true,
                application_id: "4242".into(),
                application_name: "Anchor".into(),
                flags: BASE_FLAGS | flags::GATEWAY_MESSAGE_CONTENT_LIMITED,
                integration_types: Some(vec![0]),
            }
        );
        assert_eq!(bot.intents().message_content, IntentAccess::Limited);
        assert!(bot.invite_url().contains("client_id=4242&"));
        let seen = seen.lock().expect("log").clone();
        assert_eq!(
            seen,
            [
                ("/api/v10/users/@me".into(), format!("Bot {TOKEN}")),
                ("/api/v10/applications/@me".into(), format!("Bot {TOKEN}")),
            ]
        );
    }

    #[tokio::test]
    async fn a_refused_token_says_how_to_reset_it_without_showing_it() {
        let (origin, _) = serve(discord(0));
        let mut wrong = cfg(&origin);
        wrong.token = SecretString::from("MTIz.wrong-secret-token");
        let e = check(&wrong).await.expect_err("refused");
        assert!(matches!(e, AuthError::Unauthorized), "{e:?}");
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("Bot → Reset Token"), "{shown}");
        assert!(!shown.contains("wrong-secret-token"), "{shown}");

        let mut broken = cfg(&origin);
        broken.token = SecretString::from("MTIz.secret\nwith-a-line-break");
        let e = check(&broken).await.expect_err("malformed");
        assert!(matches!(e, AuthError::MalformedToken), "{e:?}");
        assert!(!format!("{e} {e:?}").contains("secret"), "{e}");
    }

    #[tokio::test]
    async fn a_429_keeps_discords_wait_and_other_statuses_are_unexpected() {
        let (origin, _) = serve(|_, _| {
            (
                429,
                "Retry-After: 2\r\n",
                json!({"message": "You are being rate limited.", "retry_after": 1.5}).to_string(),
            )
        });
        match check(&cfg(&origin)).await {
            Err(AuthError::RateLimited { retry_after }) => {
                assert_eq!(retry_after, Duration::from_millis(1500))
            }
            other => panic!("{other:?}"),
        }

        let (origin, _) = serve(|_, _| (502, "", "<html>bad gateway</html>".into()));
        match check(&cfg(&origin)).await {
            Err(AuthError::Unexpected { path, status, .. }) => {
                assert_eq!((path.as_str(), status), ("/users/@me", 502))
            }
            other => panic!("{other:?}"),
        }

        // Not Discord: a 200 without the fields.
        let (origin, _) = serve(|_, _| (200, "", json!({"hello": "world"}).to_string()));
        let e = check(&cfg(&origin)).await.expect_err("not Discord");
        assert!(
            matches!(e, AuthError::Unexpected { status: 200, .. }),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_discord_is_named_and_not_waited_for() {
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", l.local_addr().expect("addr"))
        };
        let e = check(&cfg(&closed)).await.expect_err("closed port");
        match &e {
            AuthError::Unreachable { base, .. } => assert_eq!(base, &closed),
            other => panic!("{other:?}"),
        }
        assert!(!format!("{e} {e:?}").contains(TOKEN), "{e}");

        // A server that accepts and never answers: the limit ends the wait.
        let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
        let origin = format!("http://{}", silent.local_addr().expect("addr"));
        let started = std::time::Instant::now();
        let e = check_within(&cfg(&origin), Duration::from_millis(300))
            .await
            .expect_err("silent");
        assert!(started.elapsed() < Duration::from_secs(5), "{e}");
        assert!(
            matches!(&e, AuthError::Unreachable { reason, .. } if reason.contains("no answer within")),
            "{e:?}"
        );
        drop(silent);
    }
}
