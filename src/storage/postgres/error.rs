//! Driver errors as [`StorageError`]s: an unreachable database is `Unavailable`, anything else
//! a `Backend` failure, and every message is scrubbed of the password and the URL.

use super::url::DbUrl;
use crate::storage::StorageError;

/// Maps driver errors for one database.
pub(super) struct Errors {
    url: DbUrl,
}

impl Errors {
    /// The mapper for the database at `url`.
    pub fn new(url: DbUrl) -> Self {
        Self { url }
    }

    /// The URL (its options hold the password).
    pub fn url(&self) -> &DbUrl {
        &self.url
    }

    /// `postgres://user@host:port/database`.
    pub fn location(&self) -> &str {
        &self.url.display
    }

    /// `e` as a [`StorageError`], with nothing secret in it.
    pub fn map(&self, e: sqlx::Error) -> StorageError {
        let reason = self.url.scrub(&describe(&e));
        if unavailable(&e) {
            StorageError::Unavailable {
                location: self.url.display.clone(),
                reason,
            }
        } else {
            StorageError::Backend(reason)
        }
    }
}

/// Whether the error says the database cannot be reached or refused us, rather than that one
/// statement failed.
fn unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Class 08 is connection exceptions, 28 invalid authorization, 57P0x the server
        // shutting down or not accepting connections, 53300 too many connections.
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || c.starts_with("28") || c.starts_with("57P0") || c == "53300"
        }),
        _ => false,
    }
}

/// The driver's message, with the SQLSTATE of a database error (it says what to look up).
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_string(),
        },
        other => other.to_string(),
    }
}

/// The SQLSTATE of a database error.
pub(super) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}
