//! Anchors and de-duplication marks in PostgreSQL: `anchors` and `seen`.

use async_trait::async_trait;
use sqlx::Row;

use super::error::sqlstate;
use super::{now_ms, PgStore};
use crate::storage::{AnchorEdit, Conversations, Durability, StorageError};

/// Times an anchor update is tried when the database reports a serialization failure or a
/// deadlock (possible when the database's default isolation is stricter than read committed).
const UPDATE_ATTEMPTS: u32 = 5;

/// Marks an event handled. Marking it again restarts its day, as in sled.
const MARK_SEEN: &str = "INSERT INTO seen (conv, event_id, at_ms) VALUES ($1, $2, $3)
     ON CONFLICT (conv, event_id) DO UPDATE SET at_ms = excluded.at_ms";

/// The event's journal entry goes with its mark, in the same transaction.
const UNJOURNAL: &str = "DELETE FROM journal WHERE conv = $1 AND event_id = $2";

impl PgStore {
    /// One attempt of [`Conversations::update_anchor`].
    async fn update_anchor_once(
        &self,
        conv: &str,
        event: Option<&str>,
        edit: AnchorEdit<'_>,
    ) -> Result<Vec<u8>, Failed> {
        let mut tx = self.pool.begin().await?;
        // The row exists before it is locked, so concurrent updates of a new conversation
        // queue on its lock instead of racing to insert it. Its NULL body means "no anchor"
        // and is never committed: the row is written below, or the transaction rolls back.
        sqlx::query(
            "INSERT INTO anchors (conv, body, updated_ms) VALUES ($1, NULL, $2)
             ON CONFLICT (conv) DO NOTHING",
        )
        .bind(conv)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let current: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT body FROM anchors WHERE conv = $1 FOR UPDATE")
                .bind(conv)
                .fetch_one(&mut *tx)
                .await?;
        let body = edit(current.as_deref()).map_err(Failed::Edit)?;
        sqlx::query("UPDATE anchors SET body = $2, updated_ms = $3 WHERE conv = $1")
            .bind(conv)
            .bind(&body)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        if let Some(event) = event {
            sqlx::query(MARK_SEEN)
                .bind(conv)
                .bind(event)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            sqlx::query(UNJOURNAL)
                .bind(conv)
                .bind(event)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(body)
    }
}

/// Why one attempt of an anchor update failed.
enum Failed {
    /// The database (a conflict is retried).
    Db(sqlx::Error),
    /// The caller's edit (returned as it is; the transaction rolls back).
    Edit(StorageError),
}

impl From<sqlx::Error> for Failed {
    fn from(e: sqlx::Error) -> Self {
        Failed::Db(e)
    }
}

#[async_trait]
impl Conversations for PgStore {
    async fn anchor(&self, conv: &str) -> Result<Option<Vec<u8>>, StorageError> {
        sqlx::query_scalar::<_, Option<Vec<u8>>>("SELECT body FROM anchors WHERE conv = $1")
            .bind(conv)
            .fetch_optional(&self.pool)
            .await
            .map(Option::flatten)
            .map_err(|e| self.err(e))
    }

    async fn update_anchor(
        &self,
        conv: &str,
        event: Option<&str>,
        // A commit is durable when it returns; there is no cheaper kind to choose.
        _durability: Durability,
        edit: AnchorEdit<'_>,
    ) -> Result<Vec<u8>, StorageError> {
        let mut attempt = 1;
        loop {
            match self.update_anchor_once(conv, event, edit).await {
                Ok(body) => return Ok(body),
                Err(Failed::Edit(e)) => return Err(e),
                Err(Failed::Db(e))
                    if attempt < UPDATE_ATTEMPTS
                        && matches!(sqlstate(&e).as_deref(), Some("40001" | "40P01")) =>
                {
                    attempt += 1;
                }
                Err(Failed::Db(e)) => return Err(self.err(e)),
            }
        }
    }

    async fn remove_anchor(&self, conv: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM anchors WHERE conv = $1")
            .bind(conv)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn was_handled(&self, conv: &str, event: &str) -> Result<bool, StorageError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM seen WHERE conv = $1 AND event_id = $2)")
            .bind(conv)
            .bind(event)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))
    }

    async fn mark_handled(&self, conv: &str, event: &str) -> Result<(), StorageError> {
        let mark = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(MARK_SEEN)
                .bind(conv)
                .bind(event)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            sqlx::query(UNJOURNAL)
                .bind(conv)
                .bind(event)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        };
        mark.await.map_err(|e| self.err(e))
    }

    async fn anchored(&self) -> Result<Vec<String>, StorageError> {
        let rows = sqlx::query("SELECT conv FROM anchors WHERE body IS NOT NULL ORDER BY conv")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| r.try_get("conv").map_err(|e| self.err(e)))
            .collect()
    }

    async fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }
}
