//! Whom a native stream answers. Outside DMs `chat.startStream` takes the asking user
//! (`recipient_user_id`) and *their* team (`recipient_team_id`), which for a Slack Connect
//! guest or an Enterprise Grid user is not the workspace the event came through.
//!
//! The event says so in `user_team`, but slack-morphism's event types do not keep that field
//! (Socket Mode hands the adapter only the typed event), so the team comes from `users.info`
//! (`user.team_id`, a GET, as Slack's spec has it), asked once per person and remembered. When
//! it does not answer, the workspace's id is the best guess left.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use slack_morphism::errors::SlackClientError;

use crate::client::Api;
use crate::rate::{self, Patience};

/// People whose team is remembered at most; past it the memory starts again.
const CAPACITY: usize = 4096;
/// How long a look-up waits for `users.info`'s allowance: the answer is waiting for it.
const LOOK_UP_WAIT: Duration = Duration::from_millis(500);
/// How long a look-up that gave no team is remembered (a missing `users:read` scope must not
/// cost a call per answer).
const RETRY_AFTER: Duration = Duration::from_secs(600);
/// The Web API method.
const METHOD: &str = "users.info";

/// What is known of one person: their team, or when a look-up found none.
type Known = Result<String, Instant>;

/// The teams of the people answered, by user id.
#[derive(Debug, Default)]
pub struct Teams {
    known: Mutex<HashMap<String, Known>>,
}

impl Teams {
    /// The team of `user`: remembered, else asked of `users.info`. `None` when Slack did not
    /// say (the call failed, or its allowance is spent), lately.
    pub async fn of(&self, api: &Api, user: &str) -> Option<String> {
        match self.lock().get(user) {
            Some(Ok(team)) => return Some(team.clone()),
            Some(Err(at)) if at.elapsed() < RETRY_AFTER => return None,
            _ => {}
        }
        let team = look_up(api, user).await;
        let mut known = self.lock();
        if known.len() >= CAPACITY {
            known.clear();
        }
        known.insert(user.to_string(), team.clone().ok_or_else(Instant::now));
        team
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `users.info` for `user`, spending its allowance; the user's `team_id`.
async fn look_up(api: &Api, user: &str) -> Option<String> {
    let patience = Patience::Wait(LOOK_UP_WAIT);
    rate::before_call(api, METHOD, None, patience).await.ok()?;
    anchorbot_platform::metrics::api_call(rate::PLATFORM, METHOD);
    let session = api.session();
    let answer: Result<Value, SlackClientError> = session
        .http_session_api
        .http_get(METHOD, &[("user", Some(user))], None)
        .await;
    match answer {
        Ok(v) => v["user"]["team_id"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        Err(e) => {
            anchorbot_platform::metrics::api_error(rate::PLATFORM, METHOD);
            if let SlackClientError::RateLimitError(r) = &e {
                rate::after_429(api, METHOD, None, r.retry_after, patience);
            }
            tracing::debug!(error = %e, "users.info gave no team; the workspace's is used");
            None
        }
    }
}
