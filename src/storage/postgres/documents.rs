//! Document records, chunks, vectors and kept files in PostgreSQL: `documents`, `chunks` (the
//! vector beside its chunk) and `sources`.

use std::collections::HashSet;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{from_db, index_from_db, to_db, PgStore};
use crate::storage::{ChunkRow, DocRow, DocumentRows, StorageError};

/// Writes a document record, replacing the one stored.
const PUT_RECORD: &str = "INSERT INTO documents (conv, doc, ingested_ms, record) VALUES ($1, $2, $3, $4)
     ON CONFLICT (conv, doc) DO UPDATE SET ingested_ms = excluded.ingested_ms, record = excluded.record";

/// Writes a batch of chunks (one array per column), replacing those stored at the same place.
const PUT_CHUNKS: &str = "INSERT INTO chunks (conv, doc, page, position, record, vector)
     SELECT $1, * FROM UNNEST($2::text[], $3::bigint[], $4::bigint[], $5::bytea[], $6::bytea[])
     ON CONFLICT (conv, doc, page, position)
     DO UPDATE SET record = excluded.record, vector = excluded.vector";

impl PgStore {
    /// Writes `doc`'s record on `conn` (inside a caller's transaction).
    async fn put_record_on(
        &self,
        conn: &mut PgConnection,
        conv: &str,
        doc: &DocRow,
    ) -> Result<(), StorageError> {
        sqlx::query(PUT_RECORD)
            .bind(conv)
            .bind(&doc.doc)
            .bind(to_db(doc.ingested_ms, "ingested_ms")?)
            .bind(&doc.record)
            .execute(conn)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A `documents` row as a [`DocRow`].
    fn doc_row(&self, row: &PgRow) -> Result<DocRow, StorageError> {
        Ok(DocRow {
            doc: row.try_get("doc").map_err(|e| self.err(e))?,
            ingested_ms: from_db(row.try_get("ingested_ms").map_err(|e| self.err(e))?),
            record: row.try_get("record").map_err(|e| self.err(e))?,
        })
    }

    /// A `chunks` row as a [`ChunkRow`] (its vector empty when the row has none or it was not
    /// selected).
    fn chunk_row(&self, conv: &str, row: &PgRow) -> Result<ChunkRow, StorageError> {
        let doc: String = row.try_get("doc").map_err(|e| self.err(e))?;
        let what = || format!("chunk of {doc} in {conv}");
        let page = index_from_db(row.try_get("page").map_err(|e| self.err(e))?, &what())?;
        let position = index_from_db(row.try_get("position").map_err(|e| self.err(e))?, &what())?;
        let vector = match row.try_get::<Option<Vec<u8>>, _>("vector") {
            Ok(v) => v.unwrap_or_default(),
            Err(sqlx::Error::ColumnNotFound(_)) => Vec::new(),
            Err(e) => return Err(self.err(e)),
        };
        Ok(ChunkRow {
            record: row.try_get("record").map_err(|e| self.err(e))?,
            doc,
            page,
            position,
            vector,
        })
    }
}

#[async_trait]
impl DocumentRows for PgStore {
    async fn records(&self, conv: &str) -> Result<Vec<DocRow>, StorageError> {
        let rows = sqlx::query("SELECT doc, ingested_ms, record FROM documents WHERE conv = $1")
            .bind(conv)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(|r| self.doc_row(r)).collect()
    }

    async fn all_records(&self) -> Result<Vec<(String, DocRow)>, StorageError> {
        let rows =
            sqlx::query("SELECT conv, doc, ingested_ms, record FROM documents ORDER BY conv, doc")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("conv").map_err(|e| self.err(e))?,
                    self.doc_row(r)?,
                ))
            })
            .collect()
    }

    async fn put_record(&self, conv: &str, doc: &DocRow) -> Result<(), StorageError> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.err(e))?;
        self.put_record_on(&mut conn, conv, doc).await
    }

    async fn commit(
        &self,
        conv: &str,
        doc: &DocRow,
        chunks: &[ChunkRow],
    ) -> Result<(), StorageError> {
        // One row per place: the last chunk given for a place wins, as in a key-value store
        // (PostgreSQL refuses to upsert one row twice in a statement).
        let mut places = HashSet::new();
        let mut batch: Vec<&ChunkRow> = chunks
            .iter()
            .rev()
            .filter(|c| places.insert((c.doc.as_str(), c.page, c.position)))
            .collect();
        batch.reverse();
        let docs: Vec<&str> = batch.iter().map(|c| c.doc.as_str()).collect();
        let pages: Vec<i64> = batch.iter().map(|c| i64::from(c.page)).collect();
        let positions: Vec<i64> = batch.iter().map(|c| i64::from(c.position)).collect();
        let records: Vec<&[u8]> = batch.iter().map(|c| c.record.as_slice()).collect();
        let vectors: Vec<&[u8]> = batch.iter().map(|c| c.vector.as_slice()).collect();
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        if !batch.is_empty() {
            sqlx::query(PUT_CHUNKS)
                .bind(conv)
                .bind(docs)
                .bind(pages)
                .bind(positions)
                .bind(records)
                .bind(vectors)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        self.put_record_on(&mut tx, conv, doc).await?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn clear_page(&self, conv: &str, doc: &DocRow, page: u32) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        sqlx::query("DELETE FROM chunks WHERE conv = $1 AND doc = $2 AND page = $3")
            .bind(conv)
            .bind(&doc.doc)
            .bind(i64::from(page))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.put_record_on(&mut tx, conv, doc).await?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn remove_document(&self, conv: &str, doc: &str) -> Result<(), StorageError> {
        // One statement: the record, the chunks and the kept file go together.
        sqlx::query(
            "WITH d AS (DELETE FROM documents WHERE conv = $1 AND doc = $2),
                  c AS (DELETE FROM chunks WHERE conv = $1 AND doc = $2)
             DELETE FROM sources WHERE conv = $1 AND doc = $2",
        )
        .bind(conv)
        .bind(doc)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn put_source(&self, conv: &str, doc: &str, bytes: &[u8]) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO sources (conv, doc, bytes) VALUES ($1, $2, $3)
             ON CONFLICT (conv, doc) DO UPDATE SET bytes = excluded.bytes",
        )
        .bind(conv)
        .bind(doc)
        .bind(bytes)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn source(&self, conv: &str, doc: &str) -> Result<Option<Vec<u8>>, StorageError> {
        sqlx::query_scalar("SELECT bytes FROM sources WHERE conv = $1 AND doc = $2")
            .bind(conv)
            .bind(doc)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))
    }

    async fn remove_source(&self, conv: &str, doc: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM sources WHERE conv = $1 AND doc = $2")
            .bind(conv)
            .bind(doc)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn prune_sources(&self) -> Result<usize, StorageError> {
        let pruned = sqlx::query(
            "DELETE FROM sources s WHERE NOT EXISTS
                 (SELECT 1 FROM documents d WHERE d.conv = s.conv AND d.doc = s.doc)",
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?
        .rows_affected();
        Ok(usize::try_from(pruned).unwrap_or(usize::MAX))
    }

    async fn chunk(
        &self,
        conv: &str,
        doc: &str,
        page: u32,
        position: u32,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        sqlx::query_scalar(
            "SELECT record FROM chunks WHERE conv = $1 AND doc = $2 AND page = $3 AND position = $4",
        )
        .bind(conv)
        .bind(doc)
        .bind(i64::from(page))
        .bind(i64::from(position))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))
    }

    async fn document_chunks(&self, conv: &str, doc: &str) -> Result<Vec<ChunkRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT doc, page, position, record, vector FROM chunks WHERE conv = $1 AND doc = $2
             ORDER BY page, position",
        )
        .bind(conv)
        .bind(doc)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(|r| self.chunk_row(conv, r)).collect()
    }

    async fn scan_chunks(
        &self,
        conv: &str,
        each: &mut (dyn FnMut(ChunkRow) + Send),
    ) -> Result<(), StorageError> {
        // Streamed: rows arrive as the server sends them, never all held at once.
        let mut rows = sqlx::query(
            "SELECT doc, page, position, record, vector FROM chunks WHERE conv = $1
             ORDER BY doc, page, position",
        )
        .bind(conv)
        .fetch(&self.pool);
        while let Some(row) = rows.try_next().await.map_err(|e| self.err(e))? {
            each(self.chunk_row(conv, &row)?);
        }
        Ok(())
    }

    async fn counts(&self, conv: &str) -> Result<(u64, u64, u64), StorageError> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM documents WHERE conv = $1) AS documents,
                    count(*) AS chunks, count(vector) AS vectors
             FROM chunks WHERE conv = $1",
        )
        .bind(conv)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let get = |name: &str| self.count(&row, name);
        Ok((get("documents")?, get("chunks")?, get("vectors")?))
    }
}
