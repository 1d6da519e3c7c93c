//! People's names, so the model sees "Ada" rather than `<@U0123>`: `users.info`, cached.
//! The same look-up gives a person's team ([`UserNames::team_of`]), which a stream's
//! `recipient_team_id` needs, so one call per person serves both.
//!
//! - `users.info` is form-encoded only in Slack's Web API spec, so it goes as a GET with query
//!   parameters, as the official SDKs call it.
//! - The name is the one Slack shows: `profile.display_name`, else the real name, else the
//!   legacy username.
//! - Names are cached for [`NAME_TTL`], at most [`CAPACITY`] of them; a failed look-up is
//!   remembered for [`RETRY_AFTER`] so a broken scope does not cost a call per message.
//! - A look-up never fails a message: without a name the author is `<@U…>`, as before.
//! - Each call spends the workspace's `users.info` budget (Tier 4, [`crate::rate`]), waiting at most
//!   [`MAX_BUDGET_WAIT`]: a name is not worth delaying an answer for.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anchorbot_platform::Author;
use serde_json::Value;
use slack_morphism::errors::SlackClientError;

use crate::client::Api;
use crate::rate::{self, Patience};

/// How long a name is trusted: people rarely rename themselves, and a stale name for an hour
/// is harmless.
pub const NAME_TTL: Duration = Duration::from_secs(60 * 60);
/// How long a failed look-up is remembered before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);
/// Names kept at most (a workspace's active people, with room to spare).
pub const CAPACITY: usize = 4096;
/// The longest a look-up waits for the budget.
pub const MAX_BUDGET_WAIT: Duration = Duration::from_secs(2);
/// How a look-up meets a spent allowance or a 429's hold.
const PATIENCE: Patience = Patience::Wait(MAX_BUDGET_WAIT);
/// Characters of a name kept: a name is a label, not a place for text.
const NAME_CHARS: usize = 80;
/// The Web API method.
const METHOD: &str = "users.info";

/// What `users.info` says of a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The name Slack shows ([`shown_name`]).
    pub name: String,
    /// Their team (`team_id`), which for a Slack Connect guest is not the workspace's.
    pub team: Option<String>,
}

/// One cached look-up.
#[derive(Debug, Clone)]
struct Cached {
    /// The person; `None` when the look-up failed.
    person: Option<Person>,
    /// When it was stored, for evicting the oldest.
    at: Instant,
    /// When it goes stale.
    until: Instant,
}

/// Names by user id, shared by the inbound side (live messages) and the platform (thread
/// history). Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct UserNames {
    /// Look-ups by user id.
    cache: Mutex<HashMap<String, Cached>>,
}

impl UserNames {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

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

    /// A fresh cached look-up: `Some(None)` for a remembered failure.
    fn cached(&self, user: &str) -> Option<Option<Person>> {
        let cache = self.lock();
        let c = cache.get(user)?;
        (c.until > Instant::now()).then(|| c.person.clone())
    }

    fn store(&self, user: &str, person: Option<Person>, ttl: Duration) {
        let now = Instant::now();
        let mut cache = self.lock();
        if cache.len() >= CAPACITY && !cache.contains_key(user) {
            cache.retain(|_, c| c.until > now);
            while cache.len() >= CAPACITY {
                let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, c)| c.at)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                cache.remove(&oldest);
            }
        }
        cache.insert(
            user.to_string(),
            Cached {
                person,
                at: now,
                until: now + ttl,
            },
        );
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many look-ups are cached (for tests of the bound).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
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

    #[test]
    fn the_cache_is_bounded_and_forgets_the_oldest() {
        let names = UserNames::new();
        let person = |i: usize| Person {
            name: format!("n{i}"),
            team: Some("T1".into()),
        };
        for i in 0..CAPACITY + 10 {
            names.store(&format!("U{i}"), Some(person(i)), NAME_TTL);
        }
        assert_eq!(names.len(), CAPACITY);
        assert_eq!(names.cached("U0"), None, "the oldest went first");
        assert_eq!(
            names.cached(&format!("U{}", CAPACITY + 9)),
            Some(Some(person(CAPACITY + 9)))
        );
    }

    #[test]
    fn stale_names_are_looked_up_again() {
        let names = UserNames::new();
        let ada = Person {
            name: "Ada".into(),
            team: None,
        };
        names.store("U1", Some(ada), Duration::ZERO);
        assert_eq!(names.cached("U1"), None);
        names.store("U2", None, RETRY_AFTER);
        assert_eq!(names.cached("U2"), Some(None), "a failure is remembered");
    }
}
