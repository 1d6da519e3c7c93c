//! Document records, chunks and vectors in sled, scoped to the conversation by key prefix
//! (`{conversation}\0{document}…`), plus the in-memory vector index used for retrieval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::data_runs::Skipped;
use super::index::{ConvIndex, IndexBuilder};
use super::DocError;

pub use crate::store::DocStatus;

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

/// Document storage for every conversation. Cheap to clone (the trees and caches are shared),
/// so searches can run on the blocking pool.
#[derive(Clone)]
pub struct DocStore {
    docs: sled::Tree,
    chunks: sled::Tree,
    vectors: sled::Tree,
    /// The files of documents with failed pages or an interrupted ingestion, under their
    /// document key, so `ingest --retry-failed` can read them again without the file.
    sources: sled::Tree,
    /// Each searched conversation's index, built from sled on first use.
    index: Arc<Mutex<HashMap<String, Arc<ConvIndex>>>>,
    /// Bumped whenever a conversation's documents change, so an index built from what was
    /// read before the change is not cached.
    generation: Arc<std::sync::atomic::AtomicU64>,
    /// One lock per document being ingested, so two shares of one file do not both read it.
    ingesting: IngestLocks,
}

/// The ingestion locks by document key.
type IngestLocks = Arc<Mutex<HashMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>>>;

/// Held while one document is ingested; see [`DocStore::ingest_lock`].
pub struct IngestLock {
    key: Vec<u8>,
    lock: Option<Arc<tokio::sync::Mutex<()>>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    locks: IngestLocks,
}

impl Drop for IngestLock {
    fn drop(&mut self) {
        self.guard.take();
        let mut locks = self.locks.lock().expect("ingest locks");
        // The map's handle and ours: no one else waits, so the entry can go.
        if self.lock.take().is_some_and(|l| Arc::strong_count(&l) <= 2) {
            locks.remove(&self.key);
        }
    }
}

/// The key prefix of everything stored for `conv` in the document trees (`conv\0`).
pub fn conv_prefix(conv: &str) -> Vec<u8> {
    let mut p = conv.as_bytes().to_vec();
    p.push(0);
    p
}

fn doc_key(conv: &str, doc: &str) -> Vec<u8> {
    let mut k = conv_prefix(conv);
    k.extend_from_slice(doc.as_bytes());
    k
}

fn chunk_key(conv: &str, doc: &str, page: u32, position: u32) -> Vec<u8> {
    let mut k = doc_key(conv, doc);
    k.push(0);
    k.extend_from_slice(&page.to_be_bytes());
    k.extend_from_slice(&position.to_be_bytes());
    k
}

fn storage(e: impl std::fmt::Display) -> DocError {
    DocError::Store(e.to_string())
}

impl DocStore {
    /// Opens the document trees and marks documents whose ingestion was interrupted.
    pub fn open(db: &sled::Db) -> Result<Self, DocError> {
        let s = Self {
            docs: db.open_tree("docs").map_err(storage)?,
            chunks: db.open_tree("chunks").map_err(storage)?,
            vectors: db.open_tree("vectors").map_err(storage)?,
            sources: db.open_tree("sources").map_err(storage)?,
            index: Arc::default(),
            generation: Arc::default(),
            ingesting: Arc::default(),
        };
        // A clear removes documents by key prefix; a kept file whose document is gone goes too.
        for key in s.sources.iter().keys() {
            let key = key.map_err(storage)?;
            if !s.docs.contains_key(&key).map_err(storage)? {
                s.sources.remove(&key).map_err(storage)?;
            }
        }
        for item in s.docs.iter() {
            let (k, v) = item.map_err(storage)?;
            if let Ok(mut rec) = serde_json::from_slice::<DocRecord>(&v) {
                if rec.status == DocStatus::Ingesting {
                    tracing::warn!(document = %rec.name, "ingestion was interrupted; marked incomplete");
                    rec.status = DocStatus::Incomplete;
                    s.docs
                        .insert(k, serde_json::to_vec(&rec).expect("records serialize"))
                        .map_err(storage)?;
                }
            }
        }
        Ok(s)
    }

    /// The conversation's documents, oldest first.
    pub fn list(&self, conv: &str) -> Result<Vec<DocRecord>, DocError> {
        let mut v: Vec<DocRecord> = self
            .docs
            .scan_prefix(conv_prefix(conv))
            .filter_map(|r| r.ok())
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        v.sort_by_key(|d: &DocRecord| d.ingested_at_ms);
        Ok(v)
    }

    /// The document with this content in the conversation, if any.
    pub fn find_by_sha(&self, conv: &str, sha: &str) -> Result<Option<DocRecord>, DocError> {
        Ok(self.list(conv)?.into_iter().find(|d| d.sha256 == sha))
    }

    /// Writes a document record.
    pub fn put(&self, conv: &str, rec: &DocRecord) -> Result<(), DocError> {
        self.docs
            .insert(
                doc_key(conv, &rec.id),
                serde_json::to_vec(rec).expect("records serialize"),
            )
            .map_err(storage)?;
        Ok(())
    }

    /// Waits until no other ingestion of document `doc` in `conv` runs, and holds that until
    /// the lock is dropped.
    pub async fn ingest_lock(&self, conv: &str, doc: &str) -> IngestLock {
        let key = doc_key(conv, doc);
        let lock = self
            .ingesting
            .lock()
            .expect("ingest locks")
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
    pub fn put_source(&self, conv: &str, doc: &str, bytes: &[u8]) -> Result<(), DocError> {
        self.sources
            .insert(doc_key(conv, doc), bytes)
            .map_err(storage)?;
        Ok(())
    }

    /// The kept file of document `doc`, if any.
    pub fn source(&self, conv: &str, doc: &str) -> Result<Option<Vec<u8>>, DocError> {
        Ok(self
            .sources
            .get(doc_key(conv, doc))
            .map_err(storage)?
            .map(|v| v.to_vec()))
    }

    /// Forgets the kept file of document `doc` (it is complete, or gone).
    pub fn remove_source(&self, conv: &str, doc: &str) -> Result<(), DocError> {
        self.sources.remove(doc_key(conv, doc)).map_err(storage)?;
        Ok(())
    }

    /// Stores chunks with their vectors and the updated record in one transaction, so a page
    /// is either fully stored and marked done, or not at all.
    pub fn commit(&self, conv: &str, rec: &DocRecord, chunks: &[NewChunk]) -> Result<(), DocError> {
        let rec_bytes = serde_json::to_vec(rec).expect("records serialize");
        let rows: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = chunks
            .iter()
            .map(|c| {
                let vec: Vec<u8> = c.vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                (
                    chunk_key(conv, &rec.id, c.page, c.record.position),
                    serde_json::to_vec(&c.record).expect("records serialize"),
                    vec,
                )
            })
            .collect();
        let dk = doc_key(conv, &rec.id);
        (&self.docs, &self.chunks, &self.vectors)
            .transaction(|(d, c, v)| {
                for (k, chunk, vec) in &rows {
                    c.insert(k.as_slice(), chunk.as_slice())?;
                    v.insert(k.as_slice(), vec.as_slice())?;
                }
                d.insert(dk.as_slice(), rec_bytes.as_slice())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| storage(format!("{e:?}")))?;
        self.invalidate(conv);
        Ok(())
    }

    /// Deletes every document, chunk, vector and kept file of the conversation, and `other_key` from
    /// `other` (the conversation's anchor), in one transaction: all of it goes, or none.
    /// Returns the documents and chunks removed. The in-memory index is dropped after, so no
    /// vector can come back from it.
    pub fn clear_with(
        &self,
        conv: &str,
        other: &sled::Tree,
        other_key: &[u8],
    ) -> Result<(usize, usize), DocError> {
        let prefix = conv_prefix(conv);
        let keys = |tree: &sled::Tree| -> Result<Vec<sled::IVec>, DocError> {
            tree.scan_prefix(&prefix)
                .keys()
                .collect::<Result<_, _>>()
                .map_err(storage)
        };
        // Events of one conversation are handled one at a time, so nothing adds to these
        // prefixes between the scan and the transaction.
        let (docs, chunks, vectors, sources) = (
            keys(&self.docs)?,
            keys(&self.chunks)?,
            keys(&self.vectors)?,
            keys(&self.sources)?,
        );
        (
            &self.docs,
            &self.chunks,
            &self.vectors,
            &self.sources,
            other,
        )
            .transaction(|(d, c, v, f, o)| {
                for k in &docs {
                    d.remove(k)?;
                }
                for k in &chunks {
                    c.remove(k)?;
                }
                for k in &vectors {
                    v.remove(k)?;
                }
                for k in &sources {
                    f.remove(k)?;
                }
                o.remove(other_key)?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| storage(format!("{e:?}")))?;
        self.invalidate(conv);
        Ok((docs.len(), chunks.len()))
    }

    /// Deletes one document with its chunks and vectors.
    pub fn clear_doc(&self, conv: &str, doc: &str) -> Result<(), DocError> {
        let key = doc_key(conv, doc);
        self.docs.remove(&key).map_err(storage)?;
        self.sources.remove(&key).map_err(storage)?;
        let mut prefix = key;
        prefix.push(0);
        self.remove_prefix(&self.chunks, &prefix)?;
        self.remove_prefix(&self.vectors, &prefix)?;
        self.invalidate(conv);
        Ok(())
    }

    /// Deletes the stored chunks of one page of a document, and updates its record in the
    /// same transaction (an ingestion starting a half-stored page over).
    pub fn clear_page(&self, conv: &str, rec: &DocRecord, page: u32) -> Result<(), DocError> {
        let mut prefix = doc_key(conv, &rec.id);
        prefix.push(0);
        prefix.extend_from_slice(&page.to_be_bytes());
        let keys: Vec<sled::IVec> = self
            .chunks
            .scan_prefix(&prefix)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(storage)?;
        let rec_bytes = serde_json::to_vec(rec).expect("records serialize");
        let dk = doc_key(conv, &rec.id);
        (&self.docs, &self.chunks, &self.vectors)
            .transaction(|(d, c, v)| {
                for k in &keys {
                    c.remove(k)?;
                    v.remove(k)?;
                }
                d.insert(dk.as_slice(), rec_bytes.as_slice())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| storage(format!("{e:?}")))?;
        self.invalidate(conv);
        Ok(())
    }

    /// The stored text of chunk `position` of `page` of a document, if stored.
    pub fn chunk_text(
        &self,
        conv: &str,
        doc: &str,
        page: u32,
        position: u32,
    ) -> Result<Option<String>, DocError> {
        Ok(self
            .chunks
            .get(chunk_key(conv, doc, page, position))
            .map_err(storage)?
            .and_then(|v| serde_json::from_slice::<ChunkRecord>(&v).ok())
            .map(|c| c.text))
    }

    fn remove_prefix(&self, tree: &sled::Tree, prefix: &[u8]) -> Result<usize, DocError> {
        let keys: Vec<sled::IVec> = tree
            .scan_prefix(prefix)
            .keys()
            .filter_map(|k| k.ok())
            .collect();
        let mut batch = sled::Batch::default();
        for k in &keys {
            batch.remove(k.clone());
        }
        tree.apply_batch(batch).map_err(storage)?;
        Ok(keys.len())
    }

    /// Chunks stored for the conversation.
    pub fn chunk_count(&self, conv: &str) -> usize {
        self.chunks.scan_prefix(conv_prefix(conv)).count()
    }

    /// Documents stored for the conversation (readable or not).
    pub fn doc_count(&self, conv: &str) -> usize {
        self.docs.scan_prefix(conv_prefix(conv)).count()
    }

    /// Each conversation with documents, with its latest ingestion time (Unix ms).
    pub fn last_ingested(&self) -> Result<HashMap<String, u64>, DocError> {
        let mut out: HashMap<String, u64> = HashMap::new();
        for item in self.docs.iter() {
            let (k, v) = item.map_err(storage)?;
            let conv = k.split(|b| *b == 0).next().unwrap_or(&k);
            let at = serde_json::from_slice::<DocRecord>(&v).map_or(0, |r| r.ingested_at_ms);
            let latest = out
                .entry(String::from_utf8_lossy(conv).into_owned())
                .or_default();
            *latest = (*latest).max(at);
        }
        Ok(out)
    }

    /// Vectors stored for the conversation.
    pub fn vector_count(&self, conv: &str) -> usize {
        self.vectors.scan_prefix(conv_prefix(conv)).count()
    }

    /// A document's chunks in page and position order, each with the page of its key (a
    /// document without pages has one); an unreadable chunk is logged and left out.
    pub fn document_chunks<'a>(
        &'a self,
        conv: &str,
        doc: &str,
    ) -> impl Iterator<Item = Result<(u32, ChunkRecord), DocError>> + 'a {
        let mut prefix = doc_key(conv, doc);
        prefix.push(0);
        let at = prefix.len();
        self.chunks.scan_prefix(prefix).filter_map(move |item| {
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(e) => return Some(Err(storage(e))),
            };
            let Ok(chunk) = serde_json::from_slice::<ChunkRecord>(&v) else {
                tracing::warn!("an unreadable chunk was left out");
                return None;
            };
            let page = k
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_be_bytes);
            Some(Ok((page, chunk)))
        })
    }

    fn invalidate(&self, conv: &str) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.index.lock().expect("index lock").remove(conv);
    }

    /// The conversation's index: cached, or built from its stored chunks and vectors (about a
    /// second for 100k chunks; call it off the async workers).
    pub fn index(&self, conv: &str) -> Result<Arc<ConvIndex>, DocError> {
        if let Some(i) = self.index.lock().expect("index lock").get(conv) {
            return Ok(i.clone());
        }
        let generation = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let prefix = conv_prefix(conv);
        let mut builder = IndexBuilder::default();
        for item in self.vectors.scan_prefix(&prefix) {
            let (k, v) = item.map_err(storage)?;
            let Some(c) = self.chunks.get(&k).map_err(storage)? else {
                continue;
            };
            let Ok(c) = serde_json::from_slice::<ChunkRecord>(&c) else {
                continue;
            };
            let row: Vec<f32> = v
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            // The key is `conversation\0document\0` and eight bytes of page and position.
            let doc = k
                .get(prefix.len()..k.len().saturating_sub(9))
                .unwrap_or_default()
                .to_vec();
            let text = match &c.heading {
                Some(h) => format!("{h}\n{}", c.text),
                None => c.text,
            };
            // A document without pages is one long page: its blocks of chunks stand in for
            // pages, so it can still give several passages, just not adjacent ones.
            let page = c.page.unwrap_or(c.position / UNPAGED_BLOCK + 1);
            builder.push(k, &doc, page, &row, text);
        }
        let idx = Arc::new(builder.finish());
        let mut cache = self.index.lock().expect("index lock");
        if self.generation.load(std::sync::atomic::Ordering::SeqCst) == generation {
            cache.insert(conv.to_string(), idx.clone());
        }
        Ok(idx)
    }

    /// The stored chunk of `row`.
    pub fn chunk(&self, idx: &ConvIndex, row: usize) -> Result<Option<ChunkRecord>, DocError> {
        let Some(key) = idx.keys.get(row) else {
            return Ok(None);
        };
        match self.chunks.get(key).map_err(storage)? {
            Some(v) => Ok(serde_json::from_slice(&v).ok()),
            None => Ok(None),
        }
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
