//! The journal of accepted events and the leases, in PostgreSQL: `journal` and `leases`.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;

use super::{from_db, now_ms, PgStore};
use crate::storage::{Claim, Journal, Journaled, Leases, StorageError};

#[async_trait]
impl Journal for PgStore {
    async fn claim(
        &self,
        conv: &str,
        event: &str,
        owner: &str,
        payload: &[u8],
    ) -> Result<Claim, StorageError> {
        let claim = async {
            let mut tx = self.pool.begin().await?;
            // The row first: a claim racing a commit that moves the same event from `journal`
            // to `seen` waits here for that commit, and the check below, a statement of its
            // own, then sees its mark.
            let inserted = sqlx::query(
                "INSERT INTO journal (conv, event_id, at_ms, owner, payload)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (conv, event_id) DO NOTHING",
            )
            .bind(conv)
            .bind(event)
            .bind(now_ms())
            .bind(owner)
            .bind(payload)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Ok(Claim::Taken);
            }
            let handled: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM seen WHERE conv = $1 AND event_id = $2)",
            )
            .bind(conv)
            .bind(event)
            .fetch_one(&mut *tx)
            .await?;
            if handled {
                tx.rollback().await?;
                return Ok(Claim::Taken);
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Claim::New)
        };
        claim.await.map_err(|e| self.err(e))
    }

    async fn pending(&self) -> Result<Vec<Journaled>, StorageError> {
        let rows = sqlx::query(
            "SELECT conv, event_id, at_ms, owner, payload, reply FROM journal
             ORDER BY at_ms, conv, event_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                Ok(Journaled {
                    conv: r.try_get("conv")?,
                    event: r.try_get("event_id")?,
                    owner: r.try_get("owner")?,
                    at_ms: from_db(r.try_get("at_ms")?),
                    payload: r.try_get("payload")?,
                    reply: r.try_get("reply")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.err(e))
    }

    async fn adopt(
        &self,
        conv: &str,
        event: &str,
        from: &str,
        to: &str,
    ) -> Result<bool, StorageError> {
        let moved = sqlx::query(
            "UPDATE journal SET owner = $4 WHERE conv = $1 AND event_id = $2 AND owner = $3",
        )
        .bind(conv)
        .bind(event)
        .bind(from)
        .bind(to)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?
        .rows_affected();
        Ok(moved == 1)
    }

    async fn note_reply(&self, conv: &str, event: &str, reply: &[u8]) -> Result<(), StorageError> {
        sqlx::query("UPDATE journal SET reply = $3 WHERE conv = $1 AND event_id = $2")
            .bind(conv)
            .bind(event)
            .bind(reply)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[async_trait]
impl Leases for PgStore {
    async fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        // Taken when free, expired or already the holder's; the database's clock decides.
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at)
             VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond')
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at <= clock_timestamp()
             RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(row.is_some())
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn holder(&self, name: &str) -> Result<Option<String>, StorageError> {
        sqlx::query_scalar(
            "SELECT holder FROM leases WHERE name = $1 AND expires_at > clock_timestamp()",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))
    }

    async fn count(&self, prefix: &str) -> Result<usize, StorageError> {
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM leases
             WHERE starts_with(name, $1) AND expires_at > clock_timestamp()",
        )
        .bind(prefix)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(usize::try_from(live).unwrap_or(0))
    }
}
