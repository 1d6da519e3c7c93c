//! `auth.test` with the response headers, for `anchorbot doctor`: who the token belongs to,
//! and the scopes Slack granted it (the `x-oauth-scopes` header, which slack-morphism's client
//! does not expose). Over HTTP or HTTPS, with the adapter's own TLS stack.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::platform::web_client;
use crate::SlackConfig;

/// How long `auth.test` may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The largest `auth.test` answer read.
const MAX_BODY: usize = 64 * 1024;

/// What `auth.test` answered.
#[derive(Debug, Clone)]
pub struct AuthCheck {
    /// Its JSON body (`ok`, `team`, `team_id`, `user`, `user_id`, `bot_id`, `url` or `error`).
    pub body: Value,
    /// The scopes in `x-oauth-scopes`; `None` when Slack sent no such header.
    pub scopes: Option<Vec<String>>,
}

/// Why `auth.test` could not be asked; never holds the token.
#[derive(Debug, thiserror::Error)]
pub enum AuthCheckError {
    /// No connection, a timeout, or TLS trouble.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// The method's URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// An answer that is not Slack's JSON.
    #[error("{url} answered HTTP {status} without Slack's JSON")]
    NotSlack {
        /// The method's URL.
        url: String,
        /// HTTP status.
        status: u16,
    },
}

/// Calls `auth.test` at `cfg.api_url` with the bot token.
pub async fn auth_test(cfg: &SlackConfig) -> Result<AuthCheck, AuthCheckError> {
    let url = format!("{}/auth.test", cfg.api_base());
    let unreachable = |reason: String| AuthCheckError::Unreachable {
        url: url.clone(),
        reason,
    };
    let client = web_client().map_err(unreachable)?;
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", cfg.bot_token.expose_secret()))
        .map_err(|_| unreachable("the bot token is not a valid header value".into()))?;
    auth.set_sensitive(true);
    let request = Request::builder()
        .method(Method::POST)
        .uri(&url)
        .header(AUTHORIZATION, auth)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::new()))
        .map_err(|e| unreachable(e.to_string()))?;
    let response = tokio::time::timeout(TIMEOUT, client.request(request))
        .await
        .map_err(|_| unreachable(format!("no answer within {} s", TIMEOUT.as_secs())))?
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    let scopes = response
        .headers()
        .get("x-oauth-scopes")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        });
    let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    let body: Value = serde_json::from_slice(&body).map_err(|_| AuthCheckError::NotSlack {
        url: url.clone(),
        status,
    })?;
    Ok(AuthCheck { body, scopes })
}
