//! The cache of people's names by Slack user id: what `users.info` said of each (or that it
//! failed), until when it is trusted, at most [`CAPACITY`] entries with the oldest forgotten
//! first. Asking Slack is [`crate::users`]'s job; the cache lives here so that the Web API
//! client ([`crate::client::Api`]) can hold it without depending on the look-up.

use anchorbot_platform::sync;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Names kept at most (a workspace's active people, with room to spare).
pub const CAPACITY: usize = 4096;

/// What `users.info` says of a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The name Slack shows ([`crate::users::shown_name`]).
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

    /// A fresh cached look-up: `Some(None)` for a remembered failure.
    pub(crate) fn cached(&self, user: &str) -> Option<Option<Person>> {
        let cache = self.lock();
        let c = cache.get(user)?;
        (c.until > Instant::now()).then(|| c.person.clone())
    }

    pub(crate) fn store(&self, user: &str, person: Option<Person>, ttl: Duration) {
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
        sync::lock(&self.cache)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::users::{NAME_TTL, RETRY_AFTER};

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
