//! Rate-limit holds in PostgreSQL: `rate_holds`, one row per held key, its expiry on the
//! database's clock.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;

use super::PgStore;
use crate::storage::{RateHold, RateHolds, StorageError};

#[async_trait]
impl RateHolds for PgStore {
    async fn hold(&self, key: &str, retry_after: Duration) -> Result<(), StorageError> {
        let ms = i64::try_from(retry_after.as_millis()).unwrap_or(i64::MAX);
        let write = async {
            let mut tx = self.pool.begin().await?;
            // Holds end within seconds; the ones that ended go when a new one comes, so the
            // table holds no more than the keys held lately.
            sqlx::query("DELETE FROM rate_holds WHERE expires_at <= clock_timestamp()")
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO rate_holds (key, expires_at)
                 VALUES ($1, clock_timestamp() + $2 * interval '1 millisecond')
                 ON CONFLICT (key) DO UPDATE
                 SET expires_at = greatest(rate_holds.expires_at, excluded.expires_at)",
            )
            .bind(key)
            .bind(ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        };
        write.await.map_err(|e| self.err(e))
    }

    async fn active(&self) -> Result<Vec<RateHold>, StorageError> {
        let rows = sqlx::query(
            "SELECT key,
                    ceil(extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint
                        AS left_ms
             FROM rate_holds WHERE expires_at > clock_timestamp()",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                let left: i64 = r.try_get("left_ms")?;
                Ok(RateHold {
                    key: r.try_get("key")?,
                    left: Duration::from_millis(u64::try_from(left).unwrap_or(0)),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.err(e))
    }
}
