//! Listing, clearing and erasing conversations in PostgreSQL; readiness.
//!
//! Sizes count what the sled backend counts, so both report the same numbers for the same
//! data: one record per anchor, mark, journaled event, document, chunk, vector and kept file (a chunk row with
//! its vector is two), and the bytes of each record's sled key and value.

use std::sync::LazyLock;

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PgStore;
use crate::storage::{BackupSummary, ConvSize, Maintenance, StorageError};

/// Each table's share of a conversation's size, per row: records, bytes, documents, chunks,
/// vectors and ingestion time. The bytes are those of the sled key (`conv`, `conv\0event`,
/// `conv\0doc`, `conv\0doc\0` and eight bytes of page and position) and value.
const PARTS: [(&str, &str); 6] = [
    (
        "anchors",
        "conv, 1 AS records, octet_length(conv) + coalesce(octet_length(body), 0) AS bytes,
         0 AS documents, 0 AS chunks, 0 AS vectors, 0::bigint AS ingested",
    ),
    (
        "seen",
        "conv, 1, octet_length(conv) + 1 + octet_length(event_id) + 8, 0, 0, 0, 0",
    ),
    (
        "journal",
        "conv, 1, octet_length(conv) + 1 + octet_length(event_id) + 10 + octet_length(owner)
           + octet_length(payload),
         0, 0, 0, 0",
    ),
    (
        "documents",
        "conv, 1, octet_length(conv) + 1 + octet_length(doc) + octet_length(record),
         1, 0, 0, ingested_ms",
    ),
    (
        "chunks",
        "conv, 1 + (vector IS NOT NULL)::int,
         octet_length(conv) + octet_length(doc) + 10 + octet_length(record)
           + coalesce(octet_length(conv) + octet_length(doc) + 10 + octet_length(vector), 0),
         0, 1, (vector IS NOT NULL)::int, 0",
    ),
    (
        "sources",
        "conv, 1, octet_length(conv) + 1 + octet_length(doc) + octet_length(bytes), 0, 0, 0, 0",
    ),
];

/// The sums over the parts `p`.
const TOTALS: &str = "coalesce(sum(p.records), 0)::bigint AS records,
     coalesce(sum(p.bytes), 0)::bigint AS bytes,
     coalesce(sum(p.documents), 0)::bigint AS documents,
     coalesce(sum(p.chunks), 0)::bigint AS chunks,
     coalesce(sum(p.vectors), 0)::bigint AS vectors,
     coalesce(max(p.ingested), 0)::bigint AS ingested";

/// Every conversation with a row anywhere, with its size.
static SIZES: LazyLock<String> = LazyLock::new(|| {
    let parts: Vec<String> = PARTS
        .iter()
        .map(|(table, cols)| format!("SELECT {cols} FROM {table}"))
        .collect();
    format!(
        "SELECT p.conv, {TOTALS} FROM ({}) p GROUP BY p.conv ORDER BY p.conv",
        parts.join(" UNION ALL ")
    )
});

/// The size of conversation `$1`.
static SIZE_OF: LazyLock<String> = LazyLock::new(|| {
    let parts: Vec<String> = PARTS
        .iter()
        .map(|(table, cols)| format!("SELECT {cols} FROM {table} WHERE conv = $1"))
        .collect();
    format!("SELECT {TOTALS} FROM ({}) p", parts.join(" UNION ALL "))
});

/// Deletes every row of conversation `$1` in one statement, and sums what went.
static ERASE: LazyLock<String> = LazyLock::new(|| {
    let deletes: Vec<String> = PARTS
        .iter()
        .map(|(table, cols)| {
            format!("{table}_gone AS (DELETE FROM {table} WHERE conv = $1 RETURNING {cols})")
        })
        .collect();
    let gone: Vec<String> = PARTS
        .iter()
        .map(|(table, _)| format!("SELECT * FROM {table}_gone"))
        .collect();
    format!(
        "WITH {} SELECT {TOTALS} FROM ({}) p",
        deletes.join(", "),
        gone.join(" UNION ALL ")
    )
});

impl PgStore {
    /// A row of [`TOTALS`] as the size of `conv`.
    fn conv_size(&self, conv: String, row: &PgRow) -> Result<ConvSize, StorageError> {
        let get = |name: &str| self.count(row, name);
        Ok(ConvSize {
            conv,
            records: get("records")?,
            bytes: get("bytes")?,
            documents: get("documents")?,
            chunks: get("chunks")?,
            vectors: get("vectors")?,
            last_ingested_ms: get("ingested")?,
        })
    }
}

#[async_trait]
impl Maintenance for PgStore {
    async fn reclaim_later(&self) -> Result<(), StorageError> {
        // Autovacuum reuses the space of deleted rows; nothing to mark.
        Ok(())
    }

    async fn backup(&self, _file: &std::path::Path) -> Result<BackupSummary, StorageError> {
        Err(StorageError::Unsupported {
            what: "backup",
            backend: "PostgreSQL",
            hint: crate::storage::location::PG_DUMP_HINT,
        })
    }

    async fn sizes(&self) -> Result<Vec<ConvSize>, StorageError> {
        let rows = sqlx::query(&SIZES)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| self.conv_size(r.try_get("conv").map_err(|e| self.err(e))?, r))
            .collect()
    }

    async fn size_of(&self, conv: &str) -> Result<ConvSize, StorageError> {
        let row = sqlx::query(&SIZE_OF)
            .bind(conv)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        self.conv_size(conv.to_string(), &row)
    }

    async fn clear(&self, conv: &str) -> Result<(u64, u64), StorageError> {
        // One statement, so one transaction: everything goes, or nothing. The marks stay.
        let row = sqlx::query(
            "WITH a AS (DELETE FROM anchors WHERE conv = $1),
                  d AS (DELETE FROM documents WHERE conv = $1 RETURNING 1),
                  c AS (DELETE FROM chunks WHERE conv = $1 RETURNING 1),
                  s AS (DELETE FROM sources WHERE conv = $1)
             SELECT (SELECT count(*) FROM d) AS documents, (SELECT count(*) FROM c) AS chunks",
        )
        .bind(conv)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let get = |name: &str| self.count(&row, name);
        Ok((get("documents")?, get("chunks")?))
    }

    async fn erase(&self, conv: &str) -> Result<ConvSize, StorageError> {
        let row = sqlx::query(&ERASE)
            .bind(conv)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        self.conv_size(conv.to_string(), &row)
    }

    async fn ready(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("PostgreSQL at {}", self.location())
    }
}
