//! Document records, chunks and vectors per conversation, typed over the storage seam
//! ([`crate::storage::DocumentRows`]), plus the in-memory vector index used for retrieval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::data_runs::Skipped;
use super::search::index::{ConvIndex, IndexBuilder};
use super::DocError;
use crate::storage::{ChunkRow, ConvSize, DocRow, Storage, StorageError};

pub use crate::store::DocStatus;
use anchorbot_platform::sync;

/// How one page was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PageSource {
    /// Not read yet.
    Pending,
    /// From the text layer (or a text file).
    Text,
    /// By OCR.
    Ocr {
        /// The engine ("vision model", "tesseract").
        engine: String,
    },
    /// It failed; the rest of the document is kept.
    Failed {
        /// Why.
        reason: String,
    },
}

impl PageSource {
    /// Whether the page's text is stored (a resumed ingestion skips it).
    pub fn is_stored(&self) -> bool {
        matches!(self, PageSource::Text | PageSource::Ocr { .. })
    }
}

/// A document shared in a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocRecord {
    /// Document id (the start of its sha256).
    pub id: String,
    /// File name as shared.
    pub name: String,
    /// MIME type found by sniffing.
    pub mime: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the bytes, hex.
    pub sha256: String,
    /// Page count (1 for images and text files).
    pub pages: u32,
    /// Ingestion status.
    pub status: DocStatus,
    /// When ingestion finished or last progressed (Unix ms).
    pub ingested_at_ms: u64,
    /// Each page's source, in page order.
    pub page_status: Vec<PageSource>,
    /// Chunks stored.
    pub chunks: u32,
    /// Whether the document has real pages (PDF) for citations.
    pub paged: bool,
    /// How citations name each page (`slide 3`, `sheet Costs`), in page order; empty: by page
    /// number. Absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub page_labels: Vec<String>,
    /// A page whose first chunks are stored while the rest are not (an ingestion stopped
    /// within a page); that page resumes after them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialPage>,
    /// Text of the stored pages skipped as data (base64, `data:` URIs, minified blobs).
    #[serde(default, skip_serializing_if = "Skipped::is_empty")]
    pub skipped: Skipped,
}

/// The chunks of a page stored so far, when a page is stored in several batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialPage {
    /// The page (1-based).
    pub page: u32,
    /// Its chunks stored: positions `0..chunks`.
    pub chunks: u32,
}

impl DocRecord {
    /// What its pages are called: slides in a presentation, sheets in a workbook.
    pub fn page_noun(&self) -> (&'static str, &'static str) {
        if self.mime.contains("presentationml") {
            ("slide", "slides")
        } else if self.mime.contains("spreadsheetml") {
            ("sheet", "sheets")
        } else {
            ("page", "pages")
        }
    }

    /// "3 pages", "1 slide", "2 sheets".
    pub fn pages_counted(&self) -> String {
        let (one, many) = self.page_noun();
        crate::commands::counted(self.pages.into(), one, many)
    }

    /// OCR engines used, for `/files`.
    pub fn ocr_engines(&self) -> Vec<String> {
        let mut e: Vec<String> = self
            .page_status
            .iter()
            .filter_map(|p| match p {
                PageSource::Ocr { engine } => Some(engine.clone()),
                _ => None,
            })
            .collect();
        e.sort();
        e.dedup();
        e
    }

    /// The status its pages give it once an ingestion stops: `incomplete` while a page was
    /// never read, `partial` while one failed, else `ready`.
    pub fn settled_status(&self) -> DocStatus {
        if self.page_status.contains(&PageSource::Pending) {
            DocStatus::Incomplete
        } else if self
            .page_status
            .iter()
            .any(|p| matches!(p, PageSource::Failed { .. }))
        {
            DocStatus::Partial
        } else {
            DocStatus::Ready
        }
    }

    /// Pages that failed.
    pub fn failed_pages(&self) -> Vec<u32> {
        self.page_status
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p, PageSource::Failed { .. }))
            .map(|(i, _)| i as u32 + 1)
            .collect()
    }
}

/// A stored chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// Document id.
    pub doc_id: String,
    /// Document name, for citations.
    pub name: String,
    /// Page number, for paged documents.
    pub page: Option<u32>,
    /// Position of the chunk within its page.
    pub position: u32,
    /// Nearest heading above it.
    pub heading: Option<String>,
    /// The text.
    pub text: String,
    /// How a citation names its page (`slide 3`), when not by number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl ChunkRecord {
    /// The citation tag, e.g. `report.pdf p.3` or `deck.pptx slide 2`.
    pub fn citation(&self) -> String {
        match (&self.label, self.page) {
            (Some(label), _) => format!("{} {label}", self.name),
            (None, Some(p)) => format!("{} p.{p}", self.name),
            (None, None) => self.name.clone(),
        }
    }
}

/// One chunk waiting to be stored with its vector.
pub struct NewChunk {
    /// Page (1-based).
    pub page: u32,
    /// The record.
    pub record: ChunkRecord,
    /// Its unit-length embedding.
    pub vector: Vec<f32>,
}

/// Chunks of a document without pages that count as one page for "one hit per page"
/// (about a printed page of text at the default chunk size).
const UNPAGED_BLOCK: u32 = 8;

/// Document storage for every conversation, over the store's [`DocumentRows`], with the
/// in-memory search index of each searched conversation. Cheap to clone (the store and the
/// caches are shared), so searches can run on the blocking pool.
#[derive(Clone)]
pub struct DocStore {
    storage: Storage,
    /// Each searched conversation's index, built from the store on first use, with the
    /// conversation's (documents, chunks, vectors) counts it was built from on a shared store.
    index: Arc<Mutex<HashMap<String, Cached>>>,
    /// Bumped whenever a conversation's documents change, so an index built from what was
    /// read before the change is not cached.
    generation: Arc<std::sync::atomic::AtomicU64>,
    /// One lock per document being ingested, so two shares of one file do not both read it.
    ingesting: IngestLocks,
}

/// A cached index and, on a shared store, the counts it was built from.
type Cached = (Arc<ConvIndex>, Option<(u64, u64, u64)>);

/// The ingestion locks by conversation and document.
type IngestLocks = Arc<Mutex<HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>>>;

/// Held while one document is ingested; see [`DocStore::ingest_lock`].
pub struct IngestLock {
    key: (String, String),
    lock: Option<Arc<tokio::sync::Mutex<()>>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    locks: IngestLocks,
}

impl Drop for IngestLock {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = sync::lock(&self.locks);
        // The map's handle and ours: no one else waits, so the entry can go.
        if self.lock.take().is_some_and(|l| Arc::strong_count(&l) <= 2) {
            locks.remove(&self.key);
        }
    }
}

fn storage(e: StorageError) -> DocError {
    DocError::Store(e)
}

fn row_of(rec: &DocRecord) -> DocRow {
    DocRow {
        doc: rec.id.clone(),
        ingested_ms: rec.ingested_at_ms,
        record: serde_json::to_vec(rec).expect("records serialize"),
    }
}

/// Runs a store call from a thread of the blocking pool (an index build or a search).
fn blocking<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Handle::current().block_on(f)
}

impl DocStore {
    /// Documents over `storage`. Call [`DocStore::recover`] once at start-up.
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            index: Arc::default(),
            generation: Arc::default(),
            ingesting: Arc::default(),
        }
    }

    /// After a start: forgets kept files whose document is gone (a clear removes documents,
    /// and a crash may leave their files), and marks documents whose ingestion was
    /// interrupted as incomplete.
    pub async fn recover(&self) -> Result<(), DocError> {
        let rows = &self.storage.documents;
        rows.prune_sources().await.map_err(storage)?;
        for (conv, row) in rows.all_records().await.map_err(storage)? {
            if let Ok(mut rec) = serde_json::from_slice::<DocRecord>(&row.record) {
                if rec.status == DocStatus::Ingesting {
                    tracing::warn!(document = %rec.name, "ingestion was interrupted; marked incomplete");
                    rec.status = DocStatus::Incomplete;
                    rows.put_record(&conv, &row_of(&rec))
                        .await
                        .map_err(storage)?;
                }
            }
        }
        Ok(())
    }

    /// The conversation's documents, oldest first.
    pub async fn list(&self, conv: &str) -> Result<Vec<DocRecord>, DocError> {
        let rows = self
            .storage
            .documents
            .records(conv)
            .await
            .map_err(storage)?;
        let mut v: Vec<DocRecord> = rows
            .iter()
            .filter_map(|r| serde_json::from_slice(&r.record).ok())
            .collect();
        v.sort_by_key(|d: &DocRecord| d.ingested_at_ms);
        Ok(v)
    }

    /// The document with this content in the conversation, if any.
    pub async fn find_by_sha(&self, conv: &str, sha: &str) -> Result<Option<DocRecord>, DocError> {
        Ok(self.list(conv).await?.into_iter().find(|d| d.sha256 == sha))
    }

    /// Writes a document record.
    pub async fn put(&self, conv: &str, rec: &DocRecord) -> Result<(), DocError> {
        self.storage
            .documents
            .put_record(conv, &row_of(rec))
            .await
            .map_err(storage)
    }

    /// Waits until no other ingestion of document `doc` in `conv` runs, and holds that until
    /// the lock is dropped.
    pub async fn ingest_lock(&self, conv: &str, doc: &str) -> IngestLock {
        let key = (conv.to_string(), doc.to_string());
        let lock = sync::lock(&self.ingesting)
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = lock.clone().lock_owned().await;
        IngestLock {
            key,
            lock: Some(lock),
            guard: Some(guard),
            locks: self.ingesting.clone(),
        }
    }

    /// Keeps the file of document `doc`, so its failed pages can be retried without it.
    pub async fn put_source(&self, conv: &str, doc: &str, bytes: &[u8]) -> Result<(), DocError> {
        self.storage
            .documents
            .put_source(conv, doc, bytes)
            .await
            .map_err(storage)
    }

    /// The kept file of document `doc`, if any.
    pub async fn source(&self, conv: &str, doc: &str) -> Result<Option<Vec<u8>>, DocError> {
        self.storage
            .documents
            .source(conv, doc)
            .await
            .map_err(storage)
    }

    /// Forgets the kept file of document `doc` (it is complete, or gone).
    pub async fn remove_source(&self, conv: &str, doc: &str) -> Result<(), DocError> {
        self.storage
            .documents
            .remove_source(conv, doc)
            .await
            .map_err(storage)
    }

    /// Stores chunks with their vectors and the updated record in one transaction, so a batch
    /// is either fully stored and counted in the record, or not at all.
    pub async fn commit(
        &self,
        conv: &str,
        rec: &DocRecord,
        chunks: &[NewChunk],
    ) -> Result<(), DocError> {
        let rows: Vec<ChunkRow> = chunks
            .iter()
            .map(|c| ChunkRow {
                doc: rec.id.clone(),
                page: c.page,
                position: c.record.position,
                record: serde_json::to_vec(&c.record).expect("records serialize"),
                vector: c.vector.iter().flat_map(|x| x.to_le_bytes()).collect(),
            })
            .collect();
        let result = self
            .storage
            .documents
            .commit(conv, &row_of(rec), &rows)
            .await
            .map_err(storage);
        self.invalidate(conv);
        result
    }

    /// `/clear`: deletes every document, chunk, vector and kept file of the conversation, and
    /// its anchor, in one transaction: all of it goes, or none. Returns the documents and
    /// chunks removed. The in-memory index is dropped after, so no vector can come back from
    /// it.
    pub async fn clear(&self, conv: &str) -> Result<(u64, u64), DocError> {
        let result = self.storage.maintenance.clear(conv).await.map_err(storage);
        self.invalidate(conv);
        result
    }

    /// Forgets the conversation: everything [`DocStore::clear`] removes and its
    /// de-duplication marks. Returns what was removed.
    pub async fn erase(&self, conv: &str) -> Result<ConvSize, StorageError> {
        let result = self.storage.maintenance.erase(conv).await;
        self.invalidate(conv);
        result
    }

    /// Deletes one document with its chunks, vectors and kept file.
    pub async fn clear_doc(&self, conv: &str, doc: &str) -> Result<(), DocError> {
        let result = self
            .storage
            .documents
            .remove_document(conv, doc)
            .await
            .map_err(storage);
        self.invalidate(conv);
        result
    }

    /// Deletes the stored chunks of one page of a document, and updates its record in the
    /// same transaction (an ingestion starting a half-stored page over).
    pub async fn clear_page(&self, conv: &str, rec: &DocRecord, page: u32) -> Result<(), DocError> {
        let result = self
            .storage
            .documents
            .clear_page(conv, &row_of(rec), page)
            .await
            .map_err(storage);
        self.invalidate(conv);
        result
    }

    /// The stored text of chunk `position` of `page` of a document, if stored.
    pub async fn chunk_text(
        &self,
        conv: &str,
        doc: &str,
        page: u32,
        position: u32,
    ) -> Result<Option<String>, DocError> {
        Ok(self
            .storage
            .documents
            .chunk(conv, doc, page, position)
            .await
            .map_err(storage)?
            .and_then(|v| serde_json::from_slice::<ChunkRecord>(&v).ok())
            .map(|c| c.text))
    }

    /// Documents, chunks and vectors stored for the conversation.
    pub async fn counts(&self, conv: &str) -> Result<(u64, u64, u64), DocError> {
        self.storage.documents.counts(conv).await.map_err(storage)
    }

    /// Chunks stored for the conversation.
    pub async fn chunk_count(&self, conv: &str) -> usize {
        self.counts(conv).await.map_or(0, |c| c.1 as usize)
    }

    /// Each conversation with documents, with its latest ingestion time (Unix ms).
    pub async fn last_ingested(&self) -> Result<HashMap<String, u64>, DocError> {
        let mut out: HashMap<String, u64> = HashMap::new();
        for (conv, row) in self
            .storage
            .documents
            .all_records()
            .await
            .map_err(storage)?
        {
            let latest = out.entry(conv).or_default();
            *latest = (*latest).max(row.ingested_ms);
        }
        Ok(out)
    }

    /// A document's chunks in page and position order, each with the page of its key (a
    /// document without pages has one); an unreadable chunk is logged and left out.
    pub async fn document_chunks(
        &self,
        conv: &str,
        doc: &str,
    ) -> Result<Vec<(u32, ChunkRecord)>, DocError> {
        let rows = self
            .storage
            .documents
            .document_chunks(conv, doc)
            .await
            .map_err(storage)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| match serde_json::from_slice::<ChunkRecord>(&r.record) {
                Ok(c) => Some((r.page, c)),
                Err(_) => {
                    tracing::warn!("an unreadable chunk was left out");
                    None
                }
            })
            .collect())
    }

    fn invalidate(&self, conv: &str) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        sync::lock(&self.index).remove(conv);
    }

    /// The conversation's index: cached, or built from its stored chunks and vectors (about a
    /// second for 100k chunks). Call it on the blocking pool: it waits for the store.
    ///
    /// On a store other processes share, another replica may have added or cleared documents
    /// since the index was built: the conversation's counts are read (one query) and a cached
    /// index built from other counts is built again.
    pub fn index(&self, conv: &str) -> Result<Arc<ConvIndex>, DocError> {
        let counts = if self.storage.shared {
            Some(blocking(self.storage.documents.counts(conv)).map_err(storage)?)
        } else {
            None
        };
        if let Some((i, built_from)) = sync::lock(&self.index).get(conv) {
            if *built_from == counts {
                return Ok(i.clone());
            }
        }
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let mut builder = IndexBuilder::default();
        let mut each = |row: ChunkRow| {
            let Ok(c) = serde_json::from_slice::<ChunkRecord>(&row.record) else {
                return;
            };
            let vector: Vec<f32> = row
                .vector
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let text = match &c.heading {
                Some(h) => format!("{h}\n{}", c.text),
                None => c.text,
            };
            // A document without pages is one long page: its blocks of chunks stand in for
            // pages, so it can still give several passages, just not adjacent ones.
            let page = c.page.unwrap_or(c.position / UNPAGED_BLOCK + 1);
            builder.push((&row.doc, row.page, row.position), page, &vector, text);
        };
        blocking(self.storage.documents.scan_chunks(conv, &mut each)).map_err(storage)?;
        let idx = Arc::new(builder.finish());
        let mut cache = sync::lock(&self.index);
        if self.generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
            cache.insert(conv.to_string(), (idx.clone(), counts));
        }
        Ok(idx)
    }

    /// The stored chunk of `row` of the conversation's index.
    pub async fn chunk(
        &self,
        conv: &str,
        idx: &ConvIndex,
        row: usize,
    ) -> Result<Option<ChunkRecord>, DocError> {
        let Some(at) = idx.keys.get(row) else {
            return Ok(None);
        };
        let doc = idx.doc_ids.get(at.doc as usize).map_or("", String::as_str);
        let found = self
            .storage
            .documents
            .chunk(conv, doc, at.page, at.position)
            .await
            .map_err(storage)?;
        Ok(found.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// [`DocStore::chunk`] from the blocking pool.
    pub fn chunk_blocking(
        &self,
        conv: &str,
        idx: &ConvIndex,
        row: usize,
    ) -> Result<Option<ChunkRecord>, DocError> {
        blocking(self.chunk(conv, idx, row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_before_page_labels_still_read_and_cite_by_page() {
        let doc: DocRecord = serde_json::from_str(
            r#"{"id":"a","name":"r.pdf","mime":"application/pdf","size":1,"sha256":"x","pages":2,
            "status":"ready","ingested_at_ms":0,"page_status":[{"kind":"text"},{"kind":"text"}],
            "chunks":1,"paged":true}"#,
        )
        .unwrap();
        assert!(doc.page_labels.is_empty());
        assert_eq!(doc.pages_counted(), "2 pages");
        let chunk: ChunkRecord = serde_json::from_str(
            r#"{"doc_id":"a","name":"r.pdf","page":2,"position":0,"heading":null,"text":"t"}"#,
        )
        .unwrap();
        assert_eq!(chunk.citation(), "r.pdf p.2");
        let labelled = ChunkRecord {
            label: Some("slide 2".into()),
            ..chunk
        };
        assert_eq!(labelled.citation(), "r.pdf slide 2");
    }
}
