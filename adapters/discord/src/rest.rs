//! The REST calls the adapter makes itself, with its own reqwest client: serenity's HTTP
//! layer, with its rate limiter off (so that `api_url` is honoured), turns a 429 into an error
//! that has lost Discord's `retry_after`, and the contract needs it as
//! [`PlatformError::RateLimited`]. Every call first waits out any hold on its rate-limit bucket
//! (or a global one), and every answer tells the shared budget what Discord said about the
//! bucket ([`crate::limits`]). The client follows no redirects, which the attachment downloads
//! rely on; every error is stripped of its URL, because interaction URLs carry the interaction
//! token.

use std::sync::Arc;
use std::time::Duration;

use anchorbot_platform::{LocalBudget, PlatformError, RateBudget};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::limits::{bot_scope, retry_after, RateLimits};
use crate::DiscordConfig;

/// One REST call, headers and body.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The `custom_id` of the Stop button on a streaming reply.
pub const STOP_ID: &str = "anchorbot:stop";
/// The `custom_id` of the thumbs-up button.
pub const GOOD_ID: &str = "anchorbot:good";
/// The `custom_id` of the thumbs-down button.
pub const BAD_ID: &str = "anchorbot:bad";
/// The `custom_id` of the Regenerate button.
pub const REGENERATE_ID: &str = "anchorbot:regenerate";

/// Interaction callback: a message (slash command answer).
pub const CALLBACK_MESSAGE: u8 = 4;
/// Interaction callback: deferred message, edited later through `@original`.
pub const CALLBACK_DEFERRED: u8 = 5;
/// Interaction callback: acknowledge a component press without changing its message.
pub const CALLBACK_DEFERRED_UPDATE: u8 = 6;
/// Message flag: only the invoking user sees it.
pub const EPHEMERAL: u64 = 64;

/// Why the REST client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The token holds characters no header may carry.
    #[error("the Discord token is not a valid header value")]
    BadToken,
    /// reqwest could not build its client (TLS roots).
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
}

/// Discord's REST API at `{api_url}/api/v10`, with the bot token and its rate limits.
#[derive(Clone)]
pub struct Rest {
    client: reqwest::Client,
    base: String,
    limits: RateLimits,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Rest {
    /// A client for `cfg`: the token goes in every request's `Authorization` header. Its rate
    /// limits are held in a budget of its own.
    pub fn new(cfg: &DiscordConfig) -> Result<Self, RestError> {
        Self::with_budget(cfg, Arc::new(LocalBudget::new()))
    }

    /// A client for `cfg` whose rate limits are held in `budget` (shared with whoever else
    /// calls Discord as this bot).
    pub fn with_budget(
        cfg: &DiscordConfig,
        budget: Arc<dyn RateBudget>,
    ) -> Result<Self, RestError> {
        let mut auth = HeaderValue::from_str(&format!("Bot {}", cfg.token.expose_secret().trim()))
            .map_err(|_| RestError::BadToken)?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "DiscordBot (https://github.com/anchorbot, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .build()
            .map_err(|e| RestError::Client(e.without_url().to_string()))?;
        Ok(Self {
            client,
            base: cfg.api_base(),
            limits: RateLimits::new(budget, &bot_scope(cfg.token.expose_secret())),
        })
    }

    /// How long a rate-limit hold still stops `method path`, if one does.
    pub fn held(&self, method: &Method, path: &str) -> Option<Duration> {
        self.limits.held(&self.limits.key(method.as_str(), path))
    }

    /// A client for downloads: no token, no redirects.
    pub fn downloader() -> Result<reqwest::Client, RestError> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RestError::Client(e.without_url().to_string()))
    }

    /// Calls `method path` (relative to `/api/v10`) with an optional JSON body; the answer's
    /// JSON, or `Value::Null` for an empty one. A hold on the call's bucket is waited out
    /// first (up to [`crate::limits::MAX_HOLD_WAIT`]; past it the call fails as a 429 would).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, PlatformError> {
        self.call_coded(method, path, body)
            .await
            .map_err(|f| f.error)
    }

    /// [`Rest::call`], keeping Discord's JSON error code of a refusal, for the callers that
    /// act on one (a thread already created from a message: [`THREAD_ALREADY_CREATED`]).
    pub async fn call_coded(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let key = self.limits.key(method.as_str(), path);
        if let Err(left) = self.limits.wait(&key).await {
            return Err(PlatformError::RateLimited { retry_after: left }.into());
        }
        let route = key.route.clone();
        anchorbot_platform::metrics::api_call("discord", &route);
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .timeout(CALL_TIMEOUT);
        req = match body {
            Some(b) => req.json(b),
            None => req.header(reqwest::header::CONTENT_LENGTH, 0),
        };
        let response = req.send().await.map_err(|e| {
            anchorbot_platform::metrics::api_error("discord", &route);
            Failure::from(transport(e))
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Failure::from(transport(e)))?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        self.limits.observe(&key, status, &headers, &value);
        if status.is_success() {
            return Ok(value);
        }
        anchorbot_platform::metrics::api_error("discord", &route);
        if status == StatusCode::TOO_MANY_REQUESTS {
            anchorbot_platform::metrics::rate_limit_wait("discord", &route);
        }
        Err(Failure {
            code: error_code(&value),
            error: status_error(status, &headers, &value),
        })
    }
}

/// Discord's JSON error code: a thread has already been created from this message.
pub const THREAD_ALREADY_CREATED: i64 = 160004;

/// A call that failed, with Discord's JSON error code when its answer carried one
/// (<https://discord.com/developers/docs/topics/opcodes-and-status-codes#json>).
#[derive(Debug)]
pub struct Failure {
    /// The answer's `code`; `None` for a transport failure, a 429, or an answer without one.
    pub code: Option<i64>,
    /// The failure as the contract reports it.
    pub error: PlatformError,
}

impl From<PlatformError> for Failure {
    fn from(error: PlatformError) -> Self {
        Self { code: None, error }
    }
}

/// The JSON error code of an error answer (`0` is "general error": no code).
fn error_code(body: &Value) -> Option<i64> {
    body.get("code").and_then(Value::as_i64).filter(|c| *c != 0)
}

/// A transport error, without the URL (it may hold an interaction token).
fn transport(e: reqwest::Error) -> PlatformError {
    PlatformError::Transport(format!("Discord: {}", e.without_url()))
}

/// Maps an unsuccessful answer: 429 to [`PlatformError::RateLimited`] with Discord's wait,
/// other 4xx to `Rejected`, the rest to `Transport`.
pub fn status_error(status: StatusCode, headers: &HeaderMap, body: &Value) -> PlatformError {
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return PlatformError::RateLimited {
            retry_after: retry_after(headers, body),
        };
    }
    let code = body.get("code").and_then(Value::as_i64);
    let detail = match code {
        Some(c) => format!("Discord answered {status} (code {c}): {message}"),
        None => format!("Discord answered {status}: {message}"),
    };
    if status.is_client_error() {
        PlatformError::Rejected(detail)
    } else {
        PlatformError::Transport(detail)
    }
}

/// A button in Discord's component JSON.
fn button(style: u8, label: &str, custom_id: &str) -> Value {
    json!({ "type": 2, "style": style, "label": label, "custom_id": custom_id })
}

/// The row with the Stop button, shown while a reply streams.
pub fn stop_row() -> Value {
    json!([{ "type": 1, "components": [button(4, "Stop", STOP_ID)] }])
}

/// The row with the feedback buttons and Regenerate, on the last message of a final answer.
pub fn feedback_row() -> Value {
    json!([{
        "type": 1,
        "components": [
            button(2, "👍", GOOD_ID),
            button(2, "👎", BAD_ID),
            button(2, "Regenerate", REGENERATE_ID),
        ]
    }])
}

/// No mention in the bot's text pings anyone: the model's output is not trusted to.
pub fn no_pings() -> Value {
    json!({ "parse": [] })
}

#[cfg(test)]
mod tests {
    use reqwest::header::RETRY_AFTER;

    use super::*;
    use crate::limits::{DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER};

    #[test]
    fn a_429_keeps_discords_wait() {
        let body =
            json!({"message": "You are being rate limited.", "retry_after": 0.75, "global": false});
        let e = status_error(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), &body);
        match e {
            PlatformError::RateLimited { retry_after } => {
                assert_eq!(retry_after, Duration::from_millis(750))
            }
            other => panic!("{other:?}"),
        }
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h, &Value::Null), Duration::from_secs(2));
        assert_eq!(
            retry_after(&HeaderMap::new(), &Value::Null),
            DEFAULT_RETRY_AFTER
        );
        let garbled = json!({"retry_after": -3});
        assert_eq!(
            retry_after(&HeaderMap::new(), &garbled),
            DEFAULT_RETRY_AFTER
        );
        let huge = json!({"retry_after": 1e12});
        assert_eq!(retry_after(&HeaderMap::new(), &huge), MAX_RETRY_AFTER);
    }

    #[test]
    fn other_statuses_are_rejected_or_transport() {
        let body = json!({"message": "Missing Access", "code": 50001});
        assert!(matches!(
            status_error(StatusCode::FORBIDDEN, &HeaderMap::new(), &body),
            PlatformError::Rejected(m) if m.contains("50001")
        ));
        assert!(matches!(
            status_error(StatusCode::BAD_GATEWAY, &HeaderMap::new(), &Value::Null),
            PlatformError::Transport(_)
        ));
    }

    #[test]
    fn error_codes_are_read_from_the_answer() {
        let body = json!({"code": 160004, "message": "A thread has already been created for this message"});
        assert_eq!(error_code(&body), Some(THREAD_ALREADY_CREATED));
        assert_eq!(
            error_code(&json!({"code": 0, "message": "404: Not Found"})),
            None
        );
        assert_eq!(error_code(&Value::Null), None);
    }

    #[test]
    fn buttons_are_discord_components() {
        assert_eq!(
            stop_row(),
            json!([{"type": 1, "components": [
                {"type": 2, "style": 4, "label": "Stop", "custom_id": "anchorbot:stop"}
            ]}])
        );
        let row = feedback_row();
        let ids: Vec<&str> = row[0]["components"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["custom_id"].as_str())
            .collect();
        assert_eq!(
            ids,
            ["anchorbot:good", "anchorbot:bad", "anchorbot:regenerate"]
        );
        assert_eq!(row[0]["components"][0]["type"], 2);
    }
}
