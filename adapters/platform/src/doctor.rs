//! What `anchorbot doctor` prints for each thing it checks: a name, a state (pass, warn, fail)
//! and a detail. Each adapter checks its own platform behind [`Doctor`], which the core calls
//! without knowing the platform.

use async_trait::async_trait;

/// A platform's own checks: its settings and credentials, asked of the platform where that
/// needs it.
#[async_trait]
pub trait Doctor: Send + Sync {
    /// Runs the checks, in the order they are printed. Without credentials, one check says
    /// what to set. No detail shows a secret.
    async fn checks(&self) -> Vec<Check>;
}

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
