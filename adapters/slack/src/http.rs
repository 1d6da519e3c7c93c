//! The Events API over HTTP: Slack POSTs signed requests to `listen`.
//!
//! Three endpoints, each verified against the signing secret (Slack's `v0` HMAC-SHA256 over
//! `v0:{timestamp}:{raw body}`, within 5 minutes) before anything else is read:
//! - `POST /slack/events`: `url_verification` is answered with its `challenge`;
//!   `event_callback` is queued by its `event_id` (so Slack's retries, marked
//!   `X-Slack-Retry-Num`, are answered once);
//! - `POST /slack/commands`: slash commands (form fields);
//! - `POST /slack/interactivity`: interactions (a `payload` form field holding JSON).
//!
//! Like the Socket Mode handlers, these only queue the work and answer 200 at once, so Slack
//! gets its answer within 3 seconds however long a turn takes. A request that is unsigned,
//! wrongly signed or older than the window gets 401 and is never read further.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anchorbot_platform::{PlatformError, Shutdown};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use secrecy::ExposeSecret;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::{
    SlackEventSignatureVerifier, SlackEventSignatureVerifierError,
};
use tokio::net::TcpListener;

use crate::inbound::{Inbox, Work};
use crate::SlackConfig;

/// Where Slack sends Events API requests (the app's "Request URL").
pub const EVENTS_PATH: &str = "/slack/events";
/// Where Slack sends slash commands.
pub const COMMANDS_PATH: &str = "/slack/commands";
/// Where Slack sends interactions (button clicks).
pub const INTERACTIVITY_PATH: &str = "/slack/interactivity";

/// How long requests still being answered may take once shutdown starts.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves the Events API on `cfg.listen` until `shutdown` fires: [`bind`], then [`serve_on`].
pub async fn serve(
    cfg: &SlackConfig,
    inbox: Inbox,
    shutdown: Shutdown,
) -> Result<(), PlatformError> {
    let (listener, _) = bind(cfg).await?;
    serve_on(listener, cfg, inbox, shutdown).await
}

/// Binds `cfg.listen` and returns the listener and the address it is bound to (the real port
/// when `listen` asks for port 0).
pub async fn bind(cfg: &SlackConfig) -> Result<(TcpListener, SocketAddr), PlatformError> {
    let Some(addr) = cfg.listen else {
        return Err(PlatformError::Rejected(
            "the Events API over HTTP needs slack.listen (ANCHORBOT_SLACK_LISTEN), an address such as 0.0.0.0:3000; or set SLACK_APP_TOKEN for Socket Mode".into(),
        ));
    };
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        PlatformError::Transport(format!(
            "cannot listen on {addr} (slack.listen) for the Slack Events API: {e}"
        ))
    })?;
    let bound = listener.local_addr().map_err(|e| {
        PlatformError::Transport(format!(
            "the Slack Events API listener on {addr} has no address: {e}"
        ))
    })?;
    Ok((listener, bound))
}

/// Serves the Events API on `listener` until `shutdown` fires; then it stops accepting, gives
/// the requests being answered a moment to finish, and returns `Ok`.
pub async fn serve_on(
    listener: TcpListener,
    cfg: &SlackConfig,
    inbox: Inbox,
    shutdown: Shutdown,
) -> Result<(), PlatformError> {
    let verifier = verifier(cfg)?;
    let addr = listener.local_addr().map_err(|e| {
        PlatformError::Transport(format!("the Slack Events API listener has no address: {e}"))
    })?;
    let app = router(Arc::new(Ctx { inbox, verifier }));
    tracing::info!(
        %addr,
        events = EVENTS_PATH,
        commands = COMMANDS_PATH,
        interactivity = INTERACTIVITY_PATH,
        "Slack Events API listening on http://{addr}"
    );
    let mut stop = shutdown.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { stop.wait().await })
    .into_future();
    let mut drained = shutdown;
    // A client that keeps its connection open must not hold the shutdown up for ever.
    let deadline = async move {
        drained.wait().await;
        tracing::info!("Slack: shutting down; no new events are taken");
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        served = server => served.map_err(|e| {
            PlatformError::Transport(format!("the Slack Events API listener on {addr} failed: {e}"))
        }),
        () = deadline => {
            tracing::warn!(%addr, "Slack Events API requests still open after {DRAIN:?}; closed");
            Ok(())
        }
    }
}

/// The verifier for `cfg`'s signing secret; without one, nothing could be trusted.
fn verifier(cfg: &SlackConfig) -> Result<SlackEventSignatureVerifier, PlatformError> {
    match &cfg.signing_secret {
        Some(s) if !s.expose_secret().is_empty() => Ok(SlackEventSignatureVerifier::new(
            &SlackSigningSecret::new(s.expose_secret().to_string()),
        )),
        _ => Err(PlatformError::Rejected(
            "the Events API over HTTP needs slack.signing_secret (SLACK_SIGNING_SECRET), from the app's Basic Information page".into(),
        )),
    }
}

/// What the handlers share.
struct Ctx {
    inbox: Inbox,
    verifier: SlackEventSignatureVerifier,
}

fn router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route(EVENTS_PATH, post(events))
        .route(COMMANDS_PATH, post(commands))
        .route(INTERACTIVITY_PATH, post(interactivity))
        .with_state(ctx)
}

/// Why a request was refused, for the log: never the signature or the secret.
fn refusal(e: &SlackEventSignatureVerifierError) -> &'static str {
    match e {
        SlackEventSignatureVerifierError::WrongSignatureError(_) => {
            "the signature does not match the signing secret"
        }
        SlackEventSignatureVerifierError::IncorrectOrExpiredTimestampError(_) => {
            "the timestamp is not within 5 minutes of now"
        }
        SlackEventSignatureVerifierError::AbsentSignatureError(_) => "the signature is missing",
        SlackEventSignatureVerifierError::CryptoInitError(_) => "the signing secret is unusable",
    }
}

impl Ctx {
    /// The body as text if Slack signed it within the window; otherwise the status to answer.
    fn verified<'b>(
        &self,
        path: &str,
        peer: SocketAddr,
        headers: &HeaderMap,
        body: &'b Bytes,
    ) -> Result<&'b str, StatusCode> {
        let denied = |why: &str| {
            tracing::warn!(path, %peer, "Slack request refused: {why}");
            StatusCode::UNAUTHORIZED
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(signature), Some(timestamp)) = (
            header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER),
            header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP),
        ) else {
            return Err(denied(
                "X-Slack-Signature or X-Slack-Request-Timestamp is missing",
            ));
        };
        // Slack signs UTF-8 JSON or form bodies; anything else cannot be one of its requests.
        let Ok(text) = std::str::from_utf8(body) else {
            return Err(denied("the body is not UTF-8"));
        };
        match self.verifier.verify(signature, text, timestamp) {
            Ok(()) => Ok(text),
            Err(e) => Err(denied(refusal(&e))),
        }
    }
}

/// `POST /slack/events`.
async fn events(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = match ctx.verified(EVENTS_PATH, peer, &headers, &body) {
        Ok(b) => b,
        Err(refused) => return refused.into_response(),
    };
    if let Some(retry) = headers.get("x-slack-retry-num") {
        tracing::debug!(
            retry = retry.to_str().unwrap_or("?"),
            reason = headers
                .get("x-slack-retry-reason")
                .and_then(|r| r.to_str().ok())
                .unwrap_or("?"),
            "Slack redelivered an event"
        );
    }
    match serde_json::from_str::<SlackPushEvent>(body) {
        Ok(SlackPushEvent::UrlVerification(v)) => {
            tracing::info!("Slack verified the Events API request URL");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                v.challenge,
            )
                .into_response()
        }
        Ok(SlackPushEvent::EventCallback(cb)) => {
            let id = cb.event_id.to_string();
            ctx.inbox.offer(Some(&id), Work::Push(Box::new(cb))).await;
            StatusCode::OK.into_response()
        }
        Ok(SlackPushEvent::AppRateLimited(r)) => {
            tracing::warn!(
                minute = ?r.minute_rate_limited,
                "Slack is dropping this app's events: more than 30,000 in an hour"
            );
            StatusCode::OK.into_response()
        }
        // A signed request we cannot read would fail the same way on every retry.
        Err(e) => {
            tracing::warn!(error = %e, "unreadable Events API request from Slack; ignored");
            StatusCode::OK.into_response()
        }
    }
}

/// The form fields of a body; repeated fields keep the last value.
fn form(body: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

/// Slack's `ssl_check` when a slash command's URL is saved: it carries no work, is not
/// signed, and only wants a 200.
fn ssl_check(body: &Bytes) -> bool {
    std::str::from_utf8(body).is_ok_and(|b| form(b).get("ssl_check").is_some_and(|v| v == "1"))
}

/// `POST /slack/commands`.
async fn commands(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if ssl_check(&body) {
        return StatusCode::OK.into_response();
    }
    let body = match ctx.verified(COMMANDS_PATH, peer, &headers, &body) {
        Ok(b) => b,
        Err(refused) => return refused.into_response(),
    };
    match command(&form(body)) {
        Some(c) => {
            let id = format!("cmd:{}", c.trigger_id);
            ctx.inbox.offer(Some(&id), Work::Command(Box::new(c))).await;
        }
        None => tracing::warn!("slash command from Slack without its fields; ignored"),
    }
    // An empty 200 is the ack; the answer follows through the command's response_url.
    StatusCode::OK.into_response()
}

/// A slash command from its form fields, as Slack documents them.
fn command(f: &HashMap<String, String>) -> Option<SlackCommandEvent> {
    let response_url = url::Url::parse(f.get("response_url")?).ok()?;
    Some(
        SlackCommandEvent::new(
            f.get("team_id")?.as_str().into(),
            f.get("channel_id")?.as_str().into(),
            f.get("user_id")?.as_str().into(),
            f.get("command")?.as_str().into(),
            response_url.into(),
            f.get("trigger_id")?.as_str().into(),
        )
        .opt_team_domain(f.get("team_domain").cloned())
        .opt_channel_name(f.get("channel_name").cloned())
        .opt_text(f.get("text").cloned()),
    )
}

/// `POST /slack/interactivity`.
async fn interactivity(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = match ctx.verified(INTERACTIVITY_PATH, peer, &headers, &body) {
        Ok(b) => b,
        Err(refused) => return refused.into_response(),
    };
    let fields = form(body);
    let Some(payload) = fields.get("payload") else {
        tracing::warn!("interaction from Slack without a payload; ignored");
        return StatusCode::OK.into_response();
    };
    match serde_json::from_str::<SlackInteractionEvent>(payload) {
        Ok(i) => ctx.inbox.offer(None, Work::Interaction(Box::new(i))).await,
        Err(e) => tracing::warn!(error = %e, "unreadable interaction from Slack; ignored"),
    }
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use anchorbot_platform::{EventSink, InboundEvent, Receipt, SubmitError};
    use hmac::{Hmac, KeyInit, Mac};
    use secrecy::SecretString;
    use sha2::Sha256;
    use tokio::sync::mpsc;

    use super::*;
    use crate::client::Api;
    use crate::inbound::{self, Identity};

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

    struct Nowhere;

    impl EventSink for Nowhere {
        fn submit(&self, _event: InboundEvent) -> Result<Receipt, SubmitError> {
            Ok(Receipt::new().1)
        }
    }

    fn config(listen: Option<&str>) -> SlackConfig {
        let mut cfg = SlackConfig::new(SecretString::from("xoxb-test"));
        cfg.signing_secret = Some(SecretString::from(SECRET));
        cfg.listen = listen.map(|l| l.parse().unwrap());
        cfg.api_url = "http://127.0.0.1:9/api".into();
        cfg
    }

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// `v0=hex(HMAC-SHA256(secret, "v0:{ts}:{body}"))`, as Slack signs.
    fn sign(secret: &str, ts: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("v0:{ts}:{body}").as_bytes());
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("v0={hex}")
    }

    struct Server {
        url: String,
        rx: mpsc::Receiver<crate::inbound::Queued>,
        /// The engine stand-in: the inbox holds it weakly, as the adapter's run holds it.
        _sink: Arc<dyn EventSink>,
        stop: tokio::sync::watch::Sender<bool>,
        task: tokio::task::JoinHandle<Result<(), PlatformError>>,
        http: reqwest::Client,
    }

    impl Server {
        async fn start() -> Self {
            let cfg = config(Some("127.0.0.1:0"));
            let api = Api::new(&cfg).unwrap();
            let me = Identity {
                team: "T1".into(),
                bot_user: "UBOT".into(),
                bot_id: Some("BBOT".into()),
            };
            let sink: Arc<dyn EventSink> = Arc::new(Nowhere);
            let (inbox, _mapper, rx) = inbound::channel(cfg.clone(), api, me, sink.clone());
            let (listener, addr) = bind(&cfg).await.unwrap();
            assert_ne!(addr.port(), 0);
            let (stop, shutdown) = Shutdown::new();
            let task = tokio::spawn(async move { serve_on(listener, &cfg, inbox, shutdown).await });
            Self {
                url: format!("http://{addr}"),
                rx,
                _sink: sink,
                stop,
                task,
                http: reqwest::Client::new(),
            }
        }

        async fn post(
            &self,
            path: &str,
            content_type: &str,
            body: &str,
            headers: &[(&str, String)],
        ) -> (u16, String) {
            let mut req = self
                .http
                .post(format!("{}{path}", self.url))
                .header("content-type", content_type)
                .body(body.to_string());
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.text().await.unwrap())
        }

        async fn signed(&self, path: &str, content_type: &str, body: &str) -> (u16, String) {
            let ts = now();
            let headers = [
                ("x-slack-request-timestamp", ts.to_string()),
                ("x-slack-signature", sign(SECRET, ts, body)),
            ];
            self.post(path, content_type, body, &headers).await
        }

        async fn next(&mut self) -> Option<Work> {
            tokio::time::timeout(Duration::from_millis(300), self.rx.recv())
                .await
                .ok()
                .flatten()
                .map(|q| q.work)
        }
    }

    fn mention_callback(event_id: &str) -> String {
        serde_json::json!({
            "token": "verificationtoken",
            "team_id": "T1",
            "api_app_id": "A1",
            "event": {
                "type": "app_mention",
                "user": "U1",
                "text": "<@UBOT> hello",
                "ts": "1712345678.000100",
                "channel": "C1",
                "event_ts": "1712345678.000100"
            },
            "type": "event_callback",
            "event_id": event_id,
            "event_time": 1712345678
        })
        .to_string()
    }

    #[tokio::test]
    async fn bind_names_the_missing_setting_and_the_busy_address() {
        let e = bind(&config(None)).await.unwrap_err().to_string();
        assert!(e.contains("ANCHORBOT_SLACK_LISTEN"), "{e}");
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let e = bind(&config(Some(&addr))).await.unwrap_err().to_string();
        assert!(e.contains(&addr), "{e}");
    }

    #[tokio::test]
    async fn serving_without_a_signing_secret_is_refused() {
        let mut cfg = config(Some("127.0.0.1:0"));
        cfg.signing_secret = None;
        let api = Api::new(&cfg).unwrap();
        let me = Identity {
            team: "T1".into(),
            bot_user: "UBOT".into(),
            bot_id: None,
        };
        let (inbox, _mapper, _rx) = inbound::channel(cfg.clone(), api, me, Arc::new(Nowhere));
        let (listener, _) = bind(&cfg).await.unwrap();
        let (_stop, shutdown) = Shutdown::new();
        let e = serve_on(listener, &cfg, inbox, shutdown)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("SLACK_SIGNING_SECRET"), "{e}");
        assert!(!e.contains(SECRET));
    }

    #[tokio::test]
    async fn signed_requests_are_queued_and_answered_at_once() {
        let mut s = Server::start().await;
        let json = "application/json";
        let form = "application/x-www-form-urlencoded";

        let body = r#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        let (status, text) = s.signed(EVENTS_PATH, json, body).await;
        assert_eq!(status, 200);
        assert_eq!(text, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");

        let body = mention_callback("Ev01");
        assert_eq!(
            s.signed(EVENTS_PATH, json, &body).await,
            (200, String::new())
        );
        match s.next().await {
            Some(Work::Push(cb)) => {
                assert_eq!(cb.event_id.to_string(), "Ev01");
                assert!(matches!(cb.event, SlackEventCallbackBody::AppMention(_)));
            }
            other => panic!("expected the mention, got {other:?}"),
        }
        // Slack's retry of the same event is acknowledged and dropped.
        let ts = now();
        let retry = [
            ("x-slack-request-timestamp", ts.to_string()),
            ("x-slack-signature", sign(SECRET, ts, &body)),
            ("x-slack-retry-num", "1".to_string()),
            ("x-slack-retry-reason", "http_timeout".to_string()),
        ];
        assert_eq!(s.post(EVENTS_PATH, json, &body, &retry).await.0, 200);
        assert!(s.next().await.is_none());

        let body = "token=t&team_id=T1&team_domain=anchor-test&channel_id=C1&channel_name=general&user_id=U1&user_name=u1&command=%2Fanchor&text=status&api_app_id=A1&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1%2F1%2Fabc&trigger_id=13345224609.738474920.8088930838d88f008e0";
        assert_eq!(
            s.signed(COMMANDS_PATH, form, body).await,
            (200, String::new())
        );
        match s.next().await {
            Some(Work::Command(c)) => {
                assert_eq!(c.text.as_deref(), Some("status"));
                assert_eq!(c.command.to_string(), "/anchor");
                assert_eq!(
                    c.response_url.0.as_str(),
                    "https://hooks.slack.com/commands/T1/1/abc"
                );
            }
            other => panic!("expected the command, got {other:?}"),
        }

        let payload = serde_json::json!({
            "type": "block_actions",
            "user": {"id": "U1", "username": "u1", "team_id": "T1"},
            "api_app_id": "A1",
            "token": "t",
            "container": {"type": "message", "message_ts": "1712345678.000200", "channel_id": "C1", "is_ephemeral": false},
            "trigger_id": "1.T1.abc",
            "team": {"id": "T1", "domain": "anchor-test"},
            "channel": {"id": "C1", "name": "general"},
            "actions": [{"type": "button", "action_id": "anchorbot_feedback", "block_id": "b", "value": "good", "action_ts": "1712345679.000300"}]
        })
        .to_string();
        let body = format!(
            "payload={}",
            url::form_urlencoded::byte_serialize(payload.as_bytes()).collect::<String>()
        );
        assert_eq!(s.signed(INTERACTIVITY_PATH, form, &body).await.0, 200);
        assert!(matches!(s.next().await, Some(Work::Interaction(_))));

        // Slack's ssl_check carries no work.
        assert_eq!(
            s.post(COMMANDS_PATH, form, "token=t&ssl_check=1", &[])
                .await
                .0,
            200
        );
        assert!(s.next().await.is_none());

        s.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), s.task)
            .await
            .expect("serve_on did not return after shutdown")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn unsigned_wrongly_signed_and_stale_requests_are_refused() {
        let mut s = Server::start().await;
        let json = "application/json";
        let body = mention_callback("Ev02");
        assert_eq!(s.post(EVENTS_PATH, json, &body, &[]).await.0, 401);
        let ts = now();
        let wrong = [
            ("x-slack-request-timestamp", ts.to_string()),
            ("x-slack-signature", sign("not-the-secret", ts, &body)),
        ];
        assert_eq!(s.post(EVENTS_PATH, json, &body, &wrong).await.0, 401);
        // Signed with the right secret, but ten minutes ago: a replay.
        let old = now() - 600;
        let stale = [
            ("x-slack-request-timestamp", old.to_string()),
            ("x-slack-signature", sign(SECRET, old, &body)),
        ];
        assert_eq!(s.post(EVENTS_PATH, json, &body, &stale).await.0, 401);
        // A signature over another body.
        let ts = now();
        let other = [
            ("x-slack-request-timestamp", ts.to_string()),
            ("x-slack-signature", sign(SECRET, ts, "{}")),
        ];
        assert_eq!(s.post(EVENTS_PATH, json, &body, &other).await.0, 401);
        let form = "application/x-www-form-urlencoded";
        assert_eq!(
            s.post(COMMANDS_PATH, form, "command=%2Fanchor", &[])
                .await
                .0,
            401
        );
        assert_eq!(
            s.post(INTERACTIVITY_PATH, form, "payload=%7B%7D", &[])
                .await
                .0,
            401
        );
        assert!(s.next().await.is_none(), "nothing refused was queued");
        let _ = s.stop.send(true);
    }
}
