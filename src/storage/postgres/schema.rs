//! Versioned SQL migrations, run at connect: each file under `sql/` once, in order, recorded in
//! `schema_migrations`. Replicas starting together take turns through an advisory lock, and a
//! database written by a newer anchorbot is refused rather than guessed at.

use sqlx::{Executor, PgPool};

use super::error::Errors;
use super::now_ms;
use crate::storage::StorageError;

/// The migrations, by version. A version is never edited once released: changes are new files.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("sql/0001_init.sql")),
    (2, include_str!("sql/0002_journal_leases.sql")),
    (3, include_str!("sql/0003_journal_reply.sql")),
    (4, include_str!("sql/0004_rate_holds.sql")),
];

/// The newest schema this binary knows (a database at a newer one is refused).
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The advisory lock key held while migrating ("anchorbt" as bytes), the same in every
/// replica so two of them never migrate at once.
const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"anchorbt");

/// The schema's version before and after [`migrate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Migrated {
    /// Before (0: an empty database).
    pub from: i64,
    /// After.
    pub to: i64,
}

/// Brings the schema up to [`SCHEMA_VERSION`] in one transaction, or refuses a newer one.
pub(super) async fn migrate(pool: &PgPool, errors: &Errors) -> Result<Migrated, StorageError> {
    let schema = |e: sqlx::Error| match errors.map(e) {
        StorageError::Backend(reason) => StorageError::Schema(reason),
        other => other,
    };
    let mut tx = pool.begin().await.map_err(|e| errors.map(e))?;
    // Held until the transaction ends: a second replica waits here, then finds the work done.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(schema)?;
    // Executed as text (`raw_sql`'s future is not `Send` in sqlx 0.8): the simple query
    // protocol, which also runs a file of several statements.
    tx.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    bigint PRIMARY KEY,
             applied_ms bigint NOT NULL
         )",
    )
    .await
    .map_err(schema)?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *tx)
        .await
        .map_err(schema)?;
    let from = applied.iter().copied().max().unwrap_or(0);
    if from > SCHEMA_VERSION {
        return Err(StorageError::SchemaTooNew {
            found: from,
            supported: SCHEMA_VERSION,
        });
    }
    // Every version not applied yet runs, also one below the newest applied: migrations
    // written side by side (each on its own tables) may land in either order. A plain loop:
    // an iterator adapter's closure held across these awaits makes the future not `Send`
    // (the compiler cannot prove it for every lifetime).
    for &(version, sql) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        tx.execute(sql).await.map_err(|e| {
            StorageError::Schema(format!(
                "migration {version}: {}",
                errors.url().scrub(&e.to_string())
            ))
        })?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)")
            .bind(version)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(schema)?;
    }
    tx.commit().await.map_err(schema)?;
    Ok(Migrated {
        from,
        to: SCHEMA_VERSION,
    })
}
