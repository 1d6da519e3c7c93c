//! Where a fake records the platform rules a request broke.
//!
//! The fakes answer a request that breaks a rule the way the platform would (an error code, a
//! 400, a missing argument), and also record the rule here, named as the published
//! specification names it. A fake panics when it is dropped with rules broken, so a test fails
//! with the list even when the adapter swallowed the platform's error and carried on.

use std::sync::{Arc, Mutex, PoisonError};

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule, e.g. `slack: conversations.replies takes application/x-www-form-urlencoded`.
    pub rule: String,
    /// The request that broke it (method and path, never a token).
    pub request: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (request: {})", self.rule, self.request)
    }
}

/// The rules broken so far, shared by a fake's handlers. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Violations(Arc<Mutex<Vec<Violation>>>);

impl Violations {
    /// Records that `request` broke `rule`.
    pub fn record(&self, rule: impl Into<String>, request: impl Into<String>) {
        let v = Violation {
            rule: rule.into(),
            request: request.into(),
        };
        eprintln!("platform rule broken: {v}");
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(v);
    }

    /// Every rule broken so far, oldest first.
    pub fn all(&self) -> Vec<Violation> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes the rules broken so far, for a test that breaks one on purpose and checks it.
    pub fn take(&self) -> Vec<Violation> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Panics, listing them, if any rule was broken. Called when a fake is dropped (unless the
    /// thread is already panicking, which would abort).
    pub fn assert_none(&self, fake: &str) {
        let all = self.all();
        if !all.is_empty() && !std::thread::panicking() {
            let list = all
                .iter()
                .map(|v| format!("  - {v}"))
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "the {fake} fake received {} request(s) that break the platform's published rules:\n{list}",
                all.len()
            );
        }
    }
}
