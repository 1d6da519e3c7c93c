//! The PostgreSQL backend, selected by a `postgres://` `database_url`: the same records as the
//! sled trees, one table each (see `sql/`), reached through a connection pool. Every
//! multi-record write is one transaction; a commit is durable when it returns, so there is
//! nothing to flush.
//!
//! The password never leaves [`url`]: the store shows itself as
//! `postgres://user@host:port/database`, and driver messages are scrubbed before they become
//! [`StorageError`]s.

mod conversations;
mod documents;
mod error;
mod holds;
mod journal;
mod maintenance;
mod schema;
mod url;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use sqlx::postgres::PgPoolOptions;
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::storage::StorageError;
use error::Errors;

pub use schema::SCHEMA_VERSION;

/// `database_url` as it may be shown: `postgres://user@host:port/database`, never the
/// password (a URL that does not parse is not shown at all).
pub fn redact(url: &SecretString) -> String {
    match url::DbUrl::parse(url) {
        Ok(u) => u.display,
        Err(_) => "database_url (not a valid postgres:// URL)".to_string(),
    }
}

/// Checks that `url` is a `postgres://` URL the driver reads; the error names what is wrong,
/// never the URL.
pub fn check_url(url: &SecretString) -> Result<(), String> {
    match url::DbUrl::parse(url) {
        Ok(_) => Ok(()),
        Err(StorageError::Open { reason, .. }) => Err(reason),
        Err(e) => Err(e.to_string()),
    }
}

/// What must be kept out of logs for `url`: its password (as written and decoded) and the
/// whole URL. Nothing for a URL that does not parse (the settings refuse it).
pub fn secrets(url: &SecretString) -> Vec<String> {
    url::DbUrl::parse(url)
        .map(|u| u.secrets().to_vec())
        .unwrap_or_default()
}

/// How long processed event ids are remembered (as in the sled store).
const SEEN_TTL_MS: i64 = 24 * 3600 * 1000;

/// Connections kept open at most: a turn uses one at a time, ingestion one per batch.
const MAX_CONNECTIONS: u32 = 10;

/// How long a request waits for a connection before the database counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A store in a PostgreSQL database. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    errors: std::sync::Arc<Errors>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not derived: the pool's options hold the password.
        f.debug_struct("PgStore")
            .field("location", &self.errors.location())
            .finish()
    }
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` URL), brings its schema up to date
    /// and forgets event ids older than a day. Refuses a schema newer than this binary's.
    pub async fn connect(url: &SecretString) -> Result<Self, StorageError> {
        let url = url::DbUrl::parse(url)?;
        let options = url.options.clone();
        let errors = Errors::new(url);
        // One connection first, outside the pool: the pool retries a refused connection until
        // its timeout and then reports only that it timed out, while this says why.
        let first = tokio::time::timeout(ACQUIRE_TIMEOUT, options.connect())
            .await
            .map_err(|_| StorageError::Unavailable {
                location: errors.location().to_string(),
                reason: format!("no answer within {} s", ACQUIRE_TIMEOUT.as_secs()),
            })?
            .map_err(|e| errors.map(e))?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        first.close().await.map_err(|e| errors.map(e))?;
        let migrated = schema::migrate(&pool, &errors).await?;
        if migrated.from != migrated.to {
            tracing::info!(
                from = migrated.from,
                to = migrated.to,
                location = errors.location(),
                "database schema upgraded"
            );
        }
        let store = Self {
            pool,
            errors: std::sync::Arc::new(errors),
        };
        store.prune_seen().await?;
        Ok(store)
    }

    /// `postgres://user@host:port/database`: where the store is, without the password.
    pub fn location(&self) -> &str {
        self.errors.location()
    }

    /// Closes every connection (waiting for those in use to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Forgets event ids older than a day, so the log stays small.
    async fn prune_seen(&self) -> Result<u64, StorageError> {
        let pruned = sqlx::query("DELETE FROM seen WHERE at_ms < $1")
            .bind(now_ms() - SEEN_TTL_MS)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?
            .rows_affected();
        Ok(pruned)
    }

    /// The count in column `name` of `row`.
    fn count(&self, row: &sqlx::postgres::PgRow, name: &str) -> Result<u64, StorageError> {
        use sqlx::Row;
        row.try_get::<i64, _>(name)
            .map(from_db)
            .map_err(|e| self.err(e))
    }

    /// `e` without anything secret in it.
    fn err(&self, e: sqlx::Error) -> StorageError {
        self.errors.map(e)
    }
}

/// Now, in Unix milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A Unix-ms time or a count from the API as a `bigint`.
fn to_db(v: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::Backend(format!("{what} {v} is out of range")))
}

/// A `bigint` read back as the API's unsigned number (the columns are never negative).
fn from_db(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A stored page or position read back as `u32`.
fn index_from_db(v: i64, what: &str) -> Result<u32, StorageError> {
    u32::try_from(v).map_err(|_| StorageError::Corrupt {
        what: what.to_string(),
        reason: format!("{v} is not a valid page or position"),
    })
}
