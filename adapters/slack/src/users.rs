//! People's names, so the model sees "Ada" rather than `<@U0123>`: `users.info`, cached.
//! The same look-up gives a person's team ([`UserNames::team_of`]), which a stream's
//! `recipient_team_id` needs, so one call per person serves both.
//!
//! - `users.info` is form-encoded only in Slack's Web API spec, so it goes as a GET with query
//!   parameters, as the official SDKs call it.
//! - The name is the one Slack shows: `profile.display_name`, else the real name, else the
//!   legacy username.
//! - Names are cached for [`NAME_TTL`], at most [`crate::names::CAPACITY`] of them; a failed look-up is
//!   remembered for [`RETRY_AFTER`] so a broken scope does not cost a call per message.
//! - A look-up never fails a message: without a name the author is `<@U…>`, as before.
//! - Each call spends the workspace's `users.info` budget (Tier 4, [`crate::rate`]), waiting at most
//!   [`MAX_BUDGET_WAIT`]: a name is not worth delaying an answer for.

use std::time::Duration;

use anchorbot_platform::Author;
use serde_json::Value;
use slack_morphism::errors::SlackClientError;

use crate::client::Api;
pub use crate::names::{Person, UserNames};
use crate::rate::{self, Patience};

/// How long a name is trusted: people rarely rename themselves, and a stale name for an hour
/// is harmless.
pub const NAME_TTL: Duration = Duration::from_secs(60 * 60);
/// How long a failed look-up is remembered before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);
/// The longest a look-up waits for the budget.
pub const MAX_BUDGET_WAIT: Duration = Duration::from_secs(2);
/// How a look-up meets a spent allowance or a 429's hold.
const PATIENCE: Patience = Patience::Wait(MAX_BUDGET_WAIT);
/// Characters of a name kept: a name is a label, not a place for text.
const NAME_CHARS: usize = 80;
/// The Web API method.
const METHOD: &str = "users.info";

impl UserNames {
    /// The author `user` of workspace `team`, named.
    pub async fn author(&self, api: &Api, user: &str) -> Author {
        Author {
            id: user.to_string(),
            display_name: self.name(api, user).await,
        }
    }

    /// The name Slack shows for `user`, or `<@user>` when it cannot be had.
    pub async fn name(&self, api: &Api, user: &str) -> String {
        match self.person(api, user).await {
            Some(p) => p.name,
            None => unnamed(user),
        }
    }

    /// The team `user` belongs to, when Slack says.
    pub async fn team_of(&self, api: &Api, user: &str) -> Option<String> {
        self.person(api, user).await?.team
    }

    /// What Slack says of `user`: cached, else asked of `users.info`. `None` when it did not
    /// answer, lately.
    pub async fn person(&self, api: &Api, user: &str) -> Option<Person> {
        if let Some(cached) = self.cached(user) {
            return cached;
        }
        match look_up(api, user).await {
            Ok(person) => {
                self.store(user, Some(person.clone()), NAME_TTL);
                Some(person)
            }
            Err(why) => {
                tracing::debug!(user, why = %why, "no users.info for a Slack user; using the id");
                self.store(user, None, RETRY_AFTER);
                None
            }
        }
    }
}

/// How an author without a name is shown: the way Slack writes a mention.
pub(crate) fn unnamed(user: &str) -> String {
    format!("<@{user}>")
}

/// Why a name could not be had.
#[derive(Debug, thiserror::Error)]
enum LookUpError {
    /// The `users.info` budget is spent (or held by a 429) for longer than a name is worth.
    #[error("the users.info budget is spent for {0:?}")]
    Budget(Duration),
    /// Slack answered with an error (`user_not_found`, `missing_scope`, …).
    #[error("users.info failed: {0}")]
    Slack(SlackClientError),
    /// The user object has no name in it.
    #[error("the user object has no name")]
    Nameless,
}

/// Asks Slack for `user`'s name, spending the budget.
async fn look_up(api: &Api, user: &str) -> Result<Person, LookUpError> {
    rate::before_call(api, METHOD, None, PATIENCE)
        .await
        .map_err(LookUpError::Budget)?;
    anchorbot_platform::metrics::api_call(rate::PLATFORM, METHOD);
    let session = api.session();
    let answer: Result<Value, _> = session
        .http_session_api
        .http_get(METHOD, &[("user", Some(user))], None)
        .await;
    let answer = answer.map_err(|e| {
        anchorbot_platform::metrics::api_error(rate::PLATFORM, METHOD);
        if let SlackClientError::RateLimitError(r) = &e {
            // Held for every conversation until Retry-After has passed.
            rate::after_429(api, METHOD, None, r.retry_after, PATIENCE);
        }
        LookUpError::Slack(e)
    })?;
    let user = &answer["user"];
    Ok(Person {
        name: shown_name(user).ok_or(LookUpError::Nameless)?,
        team: user["team_id"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string),
    })
}

/// The name Slack shows for a user object: `profile.display_name`, else the real name, else
/// `name`; whitespace collapsed and at most [`NAME_CHARS`] characters.
pub fn shown_name(user: &Value) -> Option<String> {
    [
        &user["profile"]["display_name"],
        &user["profile"]["real_name"],
        &user["real_name"],
        &user["name"],
    ]
    .into_iter()
    .filter_map(Value::as_str)
    .map(|n| n.split_whitespace().collect::<Vec<_>>().join(" "))
    .find(|n| !n.is_empty())
    .map(|n| n.chars().take(NAME_CHARS).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_shown_name_is_the_display_name_then_the_real_name_then_the_username() {
        let user = |display: &str, real: &str| {
            json!({"id": "U1", "name": "ada.l", "real_name": real,
                   "profile": {"display_name": display, "real_name": real}})
        };
        assert_eq!(
            shown_name(&user("Ada", "Ada Lovelace")).as_deref(),
            Some("Ada")
        );
        assert_eq!(
            shown_name(&user("", "Ada Lovelace")).as_deref(),
            Some("Ada Lovelace")
        );
        assert_eq!(shown_name(&user(" ", "")).as_deref(), Some("ada.l"));
        assert_eq!(shown_name(&json!({"id": "U1"})), None);
        assert_eq!(
            shown_name(&user("Ada\n\tL.", "")).as_deref(),
            Some("Ada L."),
            "a name stays on one line"
        );
        let long = shown_name(&user(&"a".repeat(500), "")).expect("a name");
        assert_eq!(long.chars().count(), NAME_CHARS);
    }
}
