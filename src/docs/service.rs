//! The documents service as the engine sees it: the [`DocumentService`] trait (passages,
//! ingest, list, clear, stopping ingestions, limits) and the plain data it returns.
//! [`Documents`] implements it; the engine holds only the trait.

use anchorbot_platform::ConversationKey;
use tokio::sync::watch;

use super::{DocError, DocRecord, DocStatus, Documents, PageSource, Skipped};
use crate::retrieval::Retriever;

/// What the engine asks of a conversation's documents. Passages come from the supertrait
/// [`Retriever`]; everything else a conversation does with its files is here.
#[async_trait::async_trait]
pub trait DocumentService: Retriever {
    /// Reads one file into `key`'s documents (resuming an interrupted read of the same
    /// content). Progress notes go to `progress`.
    async fn ingest(
        &self,
        key: &ConversationKey,
        name: &str,
        bytes: &[u8],
        progress: &watch::Sender<String>,
    ) -> Result<IngestReport, DocError>;

    /// `key`'s documents.
    async fn list(&self, key: &ConversationKey) -> Result<Vec<DocumentInfo>, DocError>;

    /// Deletes `key` in one transaction: its documents, chunks and vectors, and its memory
    /// with them, all of it or (on failure) none of it. Says what was removed.
    async fn clear(&self, key: &ConversationKey) -> Result<Cleared, DocError>;

    /// Stops every ingestion running in `key` and waits until each has returned (with
    /// [`DocError::Cancelled`]); after this nothing they started writes. Ingestions started
    /// later are not affected.
    async fn stop_ingests(&self, key: &ConversationKey);

    /// Stops every ingestion, running or started from now on (shutdown). Each stops at its
    /// next step and leaves its document `incomplete`, so sharing it again resumes.
    fn cancel_all_ingests(&self);

    /// The limits on what is read.
    fn limits(&self) -> DocumentLimits;
}

/// What an ingestion did.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestReport {
    /// The stored record.
    pub doc: DocRecord,
    /// The same content was already there and complete.
    pub duplicate: bool,
    /// Pages skipped because an earlier, interrupted ingestion had stored them.
    pub resumed_pages: u32,
    /// Chunks an earlier, interrupted ingestion had stored (of those pages, and of a page it
    /// stopped inside).
    pub resumed_chunks: u32,
    /// Pages that had failed before and were read again this time.
    pub retried_pages: Vec<u32>,
}

impl IngestReport {
    /// The document as listed.
    pub fn document(&self) -> DocumentInfo {
        DocumentInfo::from(&self.doc)
    }
}

/// One document of a conversation, as `/files`, `/status` and an ingestion's line show it.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentInfo {
    /// Document id (the start of its sha256).
    pub id: String,
    /// File name as shared.
    pub name: String,
    /// MIME type found by sniffing.
    pub mime: String,
    /// Page count (1 for images and text files).
    pub pages: u32,
    /// What its pages are called, one and many: `("slide", "slides")` in a presentation.
    pub page_noun: (&'static str, &'static str),
    /// Chunks stored.
    pub chunks: u32,
    /// Ingestion status.
    pub status: DocStatus,
    /// OCR engines that read its pages, sorted, each once.
    pub ocr_engines: Vec<String>,
    /// Text skipped as data.
    pub skipped: Skipped,
    /// Pages whose text is stored.
    pub stored_pages: Vec<u32>,
    /// Pages that failed.
    pub failed_pages: Vec<u32>,
    /// Why the first failed page failed.
    pub failure: Option<String>,
}

impl From<&DocRecord> for DocumentInfo {
    fn from(d: &DocRecord) -> Self {
        Self {
            id: d.id.clone(),
            name: d.name.clone(),
            mime: d.mime.clone(),
            pages: d.pages,
            page_noun: d.page_noun(),
            chunks: d.chunks,
            status: d.status,
            ocr_engines: d.ocr_engines(),
            skipped: d.skipped,
            stored_pages: (1..)
                .zip(&d.page_status)
                .filter(|(_, p)| p.is_stored())
                .map(|(n, _)| n)
                .collect(),
            failed_pages: d.failed_pages(),
            failure: d.page_status.iter().find_map(|p| match p {
                PageSource::Failed { reason } => Some(reason.clone()),
                _ => None,
            }),
        }
    }
}

/// What a clear removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cleared {
    /// Documents.
    pub documents: u64,
    /// Chunks.
    pub chunks: u64,
}

/// The limits on what is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentLimits {
    /// The largest file read, in bytes.
    pub max_file_bytes: u64,
    /// The most pages read from one document.
    pub max_pages: u32,
}

#[async_trait::async_trait]
impl DocumentService for Documents {
    async fn ingest(
        &self,
        key: &ConversationKey,
        name: &str,
        bytes: &[u8],
        progress: &watch::Sender<String>,
    ) -> Result<IngestReport, DocError> {
        Documents::ingest(self, &key.to_string(), name, bytes, progress).await
    }

    async fn list(&self, key: &ConversationKey) -> Result<Vec<DocumentInfo>, DocError> {
        let records = self.store().list(&key.to_string()).await?;
        Ok(records.iter().map(DocumentInfo::from).collect())
    }

    async fn clear(&self, key: &ConversationKey) -> Result<Cleared, DocError> {
        let (documents, chunks) = self.store().clear(&key.to_string()).await?;
        Ok(Cleared { documents, chunks })
    }

    async fn stop_ingests(&self, key: &ConversationKey) {
        Documents::stop_ingests(self, &key.to_string()).await
    }

    fn cancel_all_ingests(&self) {
        Documents::cancel_all_ingests(self)
    }

    fn limits(&self) -> DocumentLimits {
        let cfg = self.settings();
        DocumentLimits {
            max_file_bytes: cfg.max_file_bytes(),
            max_pages: cfg.max_pages,
        }
    }
}
