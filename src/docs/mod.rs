//! Documents shared in a conversation: ingest (sniff, text layer, OCR), chunk, embed, store
//! scoped to the conversation, and retrieve with citations.
//!
//! Ingestion is resumable: a document record is written first with status `ingesting`, pages
//! are committed in batches together with their chunks and vectors, and the record is marked
//! `ready` (or `partial`) at the end. A crash leaves it `incomplete`; sharing the same file
//! again resumes from the pages already stored.

mod batch;
pub mod chunk;
pub mod data_runs;
pub mod embed;
pub mod extract;
mod model_thread;
pub mod ocr;
pub mod office;
pub mod rerank;
mod running;
pub mod search;
pub mod sniff;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::{watch, OnceCell};

use crate::commands::counted;
use crate::llm::tokens::TokenCounter;
use crate::settings::{DocumentSettings, EmbedderKind, Endpoint};
use crate::store::now_ms;
use chunk::Chunker;
pub use data_runs::Skipped;
use embed::{EmbedError, Embedder, LocalEmbedder, OpenAiEmbedder};
pub use search::SearchMode;
use sniff::{Kind, OfficeKind, TextKind};
use store::{ChunkRecord, NewChunk};
pub use store::{DocRecord, DocStatus, DocStore, PageSource, PartialPage};

/// Why a document could not be read; every variant is a message for the person who shared it.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum DocError {
    /// Over the size limit.
    #[error("the file is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Over the page limit.
    #[error("the document has {pages} pages, over the limit of {limit}")]
    TooManyPages {
        /// Its pages.
        pages: u32,
        /// The limit.
        limit: u32,
    },
    /// An image with too many pixels (a decompression bomb, or just huge).
    #[error("the image is {width}×{height} pixels, over the limit of {limit} pixels")]
    ImageTooLarge {
        /// Width.
        width: u64,
        /// Height.
        height: u64,
        /// Pixel limit.
        limit: u64,
    },
    /// More text than one document may hold.
    #[error("the file holds too much text to index ({chunks} passages, over the limit of {limit}); share the part that matters")]
    TooMuchText {
        /// Chunks its text makes.
        chunks: usize,
        /// The limit.
        limit: usize,
    },
    /// More than reading one file may produce; stopped while reading, before it fills memory.
    #[error("the file holds more than {limit}, more than anchorbot reads from one file; share the part that matters")]
    OverLimit {
        /// The limit it crossed.
        limit: extract::ReadLimit,
    },
    /// Nothing in it.
    #[error("the file is empty")]
    Empty,
    /// Read, but no text in it (blank pages, or images OCR could not read).
    #[error("the file has no readable text")]
    NoText,
    /// Its only text is data with no break (base64, a `data:` URI, a hex dump, a line of
    /// commas), which is skipped.
    #[error("the file has no readable text: {}", skipped.describe())]
    OnlyData {
        /// What was skipped.
        skipped: Skipped,
    },
    /// Stopped before it finished: the conversation was cleared, or anchorbot is shutting
    /// down. What was stored stays (unless cleared); sharing the file again resumes.
    #[error("reading the file was stopped before it finished")]
    Cancelled,
    /// Not a format anchorbot reads.
    #[error("{mime} files are not supported; share a PDF, a Word, PowerPoint or Excel file (DOCX, PPTX, XLSX), an image (PNG, JPEG, WebP, GIF) or a text, Markdown, CSV, HTML or source file")]
    Unsupported {
        /// What it looks like.
        mime: String,
    },
    /// Password-protected.
    #[error("the file is encrypted with a password; share an unprotected copy")]
    Encrypted,
    /// Damaged or truncated.
    #[error("the file looks damaged or truncated ({reason})")]
    Corrupt {
        /// What the parser said.
        reason: String,
    },
    /// Parsing took too long.
    #[error("reading the file took longer than {secs} s and was stopped")]
    Timeout {
        /// The limit.
        secs: u64,
    },
    /// A needed tool is not installed.
    #[error(
        "the `{tool}` program is not installed (Debian package poppler-utils or tesseract-ocr)"
    )]
    ToolMissing {
        /// The program.
        tool: String,
    },
    /// OCR failed.
    #[error("OCR failed: {reason}")]
    Ocr {
        /// Why.
        reason: String,
    },
    /// Embeddings unavailable.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// Storage failed.
    #[error("storage error: {0}")]
    Store(String),
    /// Local I/O failed.
    #[error("I/O error: {0}")]
    Io(String),
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
    /// One line for the chat.
    pub fn summary(&self) -> String {
        let d = &self.doc;
        if self.duplicate {
            return format!(
                "📄 {} is already in this conversation ({}, {}).",
                d.name,
                d.pages_counted(),
                counted(d.chunks.into(), "chunk", "chunks"),
            );
        }
        let mut s = format!(
            "📄 Added {}: {}, {}",
            d.name,
            d.pages_counted(),
            counted(d.chunks.into(), "chunk", "chunks"),
        );
        let engines = d.ocr_engines();
        if !engines.is_empty() {
            s.push_str(&format!(", OCR by {}", engines.join(" and ")));
        }
        if !d.skipped.is_empty() {
            s.push_str(&format!("; {}", d.skipped.describe()));
        }
        if self.resumed_pages > 0 {
            s.push_str(&format!(
                ", resumed after {} already stored",
                counted(self.resumed_pages.into(), "page", "pages")
            ));
        } else if self.resumed_chunks > 0 {
            s.push_str(&format!(
                ", resumed after {} already stored",
                counted(self.resumed_chunks.into(), "chunk", "chunks")
            ));
        }
        if !self.retried_pages.is_empty() {
            let read = self
                .retried_pages
                .iter()
                .filter(|&&p| {
                    d.page_status
                        .get(p as usize - 1)
                        .is_some_and(PageSource::is_stored)
                })
                .count();
            s.push_str(&format!(
                ", retried failed page{} {}: {}",
                if self.retried_pages.len() > 1 {
                    "s"
                } else {
                    ""
                },
                page_list(&self.retried_pages),
                match read {
                    0 => "still unreadable".to_string(),
                    n if n == self.retried_pages.len() => "now read".to_string(),
                    n => format!("{n} now read"),
                }
            ));
        }
        let failed = d.failed_pages();
        if !failed.is_empty() {
            let reason = d
                .page_status
                .iter()
                .find_map(|p| match p {
                    PageSource::Failed { reason } => Some(reason.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            s.push_str(&format!(
                ". ⚠️ Could not read page{} {} ({reason}); the rest is kept",
                if failed.len() > 1 { "s" } else { "" },
                page_list(&failed)
            ));
        }
        s.push('.');
        s
    }
}

/// One page waiting for chunking.
struct ReadPage {
    page: u32,
    text: String,
    source: PageSource,
}

/// A page's chunks, from the chunker's output.
fn page_chunks(page: ReadPage, chunked: chunk::Chunked) -> batch::PageChunks {
    batch::PageChunks {
        page: page.page,
        source: page.source,
        chunks: chunked.chunks,
        skipped: chunked.skipped,
        from: 0,
    }
}

/// The progress note of one ingestion: by chunks embedded, so it moves within a page; by
/// pages when scanned pages are read (their chunks are not known ahead).
struct Meter<'a> {
    name: &'a str,
    pages: u32,
    to_embed: usize,
    by_page: bool,
}

impl Meter<'_> {
    fn note(&self, rec: &DocRecord, embedded: usize) -> String {
        let name = self.name;
        if self.by_page || self.to_embed == 0 {
            let done = rec
                .page_status
                .iter()
                .filter(|p| !matches!(p, PageSource::Pending))
                .count();
            return format!("Indexing {name}: page {done}/{}", self.pages);
        }
        let total = self.to_embed;
        let done = embedded.min(total);
        format!(
            "Indexing {name}: {done} of {total} chunks ({}%)",
            done * 100 / total
        )
    }
}

/// The documents service.
pub struct Documents {
    /// Settings.
    cfg: DocumentSettings,
    /// The vision endpoint for OCR.
    vision: Endpoint,
    /// Storage and index.
    store: DocStore,
    /// The main store, for serialized flushes.
    anchors: crate::store::Store,
    /// Chunk sizing.
    chunker: Chunker,
    /// The embedder, loaded on first use (plain chat never needs it).
    embedder: OnceCell<Arc<dyn Embedder>>,
    /// The embedder of questions, loaded on first use: the int8 copy of the local model when
    /// there is one, else the embedder.
    query_embedder: OnceCell<Arc<dyn Embedder>>,
    /// Orders passages with the reasoning model, when `documents.rerank = "llm"`.
    reranker: Option<Arc<rerank::Reranker>>,
    /// The ingestions running, so `/clear` and shutdown can stop them.
    running: running::Running,
}

impl Documents {
    /// The service over `db`.
    pub fn new(
        anchors: crate::store::Store,
        cfg: DocumentSettings,
        vision: Endpoint,
        counter: Arc<dyn TokenCounter>,
    ) -> Result<Self, DocError> {
        // Chunks are sized by the embedding model's own tokenizer when it is local; an
        // embeddings endpoint's tokenizer is unknown, so the prompt's stands in.
        let counter: Arc<dyn TokenCounter> = match cfg.embedder {
            EmbedderKind::Local => match chunk::ModelTokens::from_dir(&cfg.model_dir) {
                Ok(t) => Arc::new(t),
                Err(e) => {
                    tracing::warn!(error = %e, "the embedding model's tokenizer is unreadable; chunks are sized in prompt tokens");
                    counter
                }
            },
            _ => counter,
        };
        Ok(Self {
            chunker: Chunker::new(counter, cfg.chunk_tokens, cfg.chunk_overlap),
            store: DocStore::new(anchors.storage().clone()),
            anchors,
            cfg,
            vision,
            embedder: OnceCell::new(),
            query_embedder: OnceCell::new(),
            reranker: None,
            running: running::Running::default(),
        })
    }

    /// The storage.
    pub fn store(&self) -> &DocStore {
        &self.store
    }

    /// The settings.
    pub fn settings(&self) -> &DocumentSettings {
        &self.cfg
    }

    /// The embedder, loading it on first use.
    pub async fn embedder(&self) -> Result<Arc<dyn Embedder>, EmbedError> {
        self.embedder
            .get_or_try_init(|| async {
                let e: Arc<dyn Embedder> = match self.cfg.embedder {
                    EmbedderKind::Local => {
                        let dir = self.cfg.model_dir.clone();
                        let lib = self.cfg.onnxruntime.clone();
                        let threads = self.cfg.embed_threads;
                        Arc::new(
                            tokio::task::spawn_blocking(move || {
                                LocalEmbedder::load(&dir, &lib, threads)
                            })
                            .await
                            .map_err(|e| EmbedError::Failed(e.to_string()))??,
                        )
                    }
                    EmbedderKind::Openai => {
                        Arc::new(OpenAiEmbedder::new(self.cfg.embeddings.clone()))
                    }
                    EmbedderKind::Download => {
                        let lib = self.cfg.onnxruntime.clone();
                        let threads = self.cfg.embed_threads;
                        Arc::new(
                            tokio::task::spawn_blocking(move || {
                                LocalEmbedder::download(&lib, threads)
                            })
                            .await
                            .map_err(|e| EmbedError::Failed(e.to_string()))??,
                        )
                    }
                };
                tracing::info!(embedder = %e.name(), "embedding model ready");
                Ok(e)
            })
            .await
            .cloned()
    }

    async fn flush(&self) -> Result<(), DocError> {
        self.anchors
            .flush()
            .await
            .map_err(|e| DocError::Store(e.to_string()))
    }

    /// The embedder of questions: with `documents.quantized_queries` and a local model that
    /// has an int8 copy ([`embed::QUANTIZED_FILE`], written by `.ci/setup-models.sh`), the
    /// copy: twice as fast on a CPU, which is most of a search's time, for a fraction of a
    /// point of recall (`BENCHMARKS.md`). Documents keep the full model's vectors.
    async fn query_embedder(&self) -> Result<Arc<dyn Embedder>, EmbedError> {
        self.query_embedder
            .get_or_try_init(|| async {
                let quantized = match (self.cfg.embedder, self.cfg.quantized_queries) {
                    (EmbedderKind::Local, true) => embed::quantized_model(&self.cfg.model_dir),
                    _ => None,
                };
                let Some(file) = quantized else {
                    return self.embedder().await;
                };
                let (dir, lib) = (self.cfg.model_dir.clone(), self.cfg.onnxruntime.clone());
                // One thread: a question is a few dozen tokens, and a second thread would wait
                // for the core that the lexical search of the same question is using.
                let loaded = tokio::task::spawn_blocking(move || {
                    LocalEmbedder::load_file(&dir, embed::QUANTIZED_FILE, &lib, Some(1))
                })
                .await
                .map_err(|e| EmbedError::Failed(e.to_string()))?;
                match loaded {
                    Ok(e) => {
                        tracing::info!(model = %file.display(), "questions are embedded by the quantized model");
                        Ok(Arc::new(e) as Arc<dyn Embedder>)
                    }
                    Err(e) => {
                        tracing::warn!(model = %file.display(), error = %e, "the quantized model does not load; questions use the full model");
                        self.embedder().await
                    }
                }
            })
            .await
            .cloned()
    }

    /// The unit vector of a question.
    pub async fn embed_query(&self, query: &str) -> Result<Vec<f32>, EmbedError> {
        let embedder = self.query_embedder().await?;
        let mut v = embedder.embed(vec![query.to_string()]).await?;
        v.pop()
            .ok_or_else(|| EmbedError::Failed("no vector for the question".into()))
    }

    /// Adds the reranker `documents.rerank = "llm"` uses.
    pub fn set_reranker(&mut self, reranker: Arc<rerank::Reranker>) {
        self.reranker = Some(reranker);
    }

    /// Stops every ingestion running in `conv` and waits until each has returned (with
    /// [`DocError::Cancelled`]); after this nothing they started writes. Ingestions started
    /// later are not affected.
    pub async fn stop_ingests(&self, conv: &str) {
        self.running.stop(conv).await;
    }

    /// Stops every ingestion, running or started from now on (shutdown). Each stops at its
    /// next step and leaves its document `incomplete`, so sharing it again resumes.
    pub fn cancel_all_ingests(&self) {
        self.running.stop_all();
    }

    /// Ingests one file into conversation `conv`. Progress notes go to `progress`.
    pub async fn ingest(
        &self,
        conv: &str,
        name: &str,
        bytes: &[u8],
        progress: &watch::Sender<String>,
    ) -> Result<IngestReport, DocError> {
        let limit = self.cfg.max_file_bytes();
        if bytes.len() as u64 > limit {
            return Err(DocError::TooLarge {
                size: bytes.len() as u64,
                limit,
            });
        }
        if bytes.is_empty() {
            return Err(DocError::Empty);
        }
        let kind = sniff::sniff(bytes, name).map_err(|u| {
            if u.encrypted {
                DocError::Encrypted
            } else {
                DocError::Unsupported { mime: u.mime }
            }
        })?;
        let sha = hex(&Sha256::digest(bytes));
        let ticket = self.running.start(conv);
        // A second share of a file being read waits for the first, then finds it complete or
        // resumes where it stopped.
        let _one_at_a_time = tokio::select! {
            lock = self.store.ingest_lock(conv, &sha[..16]) => lock,
            _ = ticket.stop.cancelled() => return Err(DocError::Cancelled),
        };
        let existing = self.store.find_by_sha(conv, &sha).await?;
        if let Some(d) = &existing {
            // Only a complete document is a duplicate: one with failed or unread pages resumes.
            if d.status == DocStatus::Ready {
                return Ok(IngestReport {
                    doc: d.clone(),
                    duplicate: true,
                    resumed_pages: 0,
                    resumed_chunks: 0,
                    retried_pages: Vec::new(),
                });
            }
        }
        let _ = progress.send(format!("Reading {name}…"));
        let parse_limit = Duration::from_secs(self.cfg.parse_timeout_secs);
        // Page count and kind of content, before anything is stored.
        let dir = tempfile::tempdir().map_err(|e| DocError::Io(e.to_string()))?;
        let (pages, layout) = match kind {
            Kind::Pdf => {
                let path = dir.path().join("doc.pdf");
                std::fs::write(&path, bytes).map_err(|e| DocError::Io(e.to_string()))?;
                let info = extract::pdf_info(&path, parse_limit).await?;
                if info.pages > self.cfg.max_pages {
                    return Err(DocError::TooManyPages {
                        pages: info.pages,
                        limit: self.cfg.max_pages,
                    });
                }
                (info.pages, Layout::Pdf((path, info)))
            }
            Kind::Image(_) => {
                let size = imagesize::blob_size(bytes).map_err(|e| DocError::Corrupt {
                    reason: format!("image header: {e}"),
                })?;
                let pixels = size.width as u64 * size.height as u64;
                if pixels > self.cfg.max_image_pixels {
                    return Err(DocError::ImageTooLarge {
                        width: size.width as u64,
                        height: size.height as u64,
                        limit: self.cfg.max_image_pixels,
                    });
                }
                (1, Layout::Single)
            }
            Kind::Text(_) => (1, Layout::Single),
            Kind::Office(office) => {
                let owned = bytes.to_vec();
                let limits = extract::ReadLimits::for_documents(&self.cfg);
                let extracted = extract::blocking(parse_limit, move |cancel| match office {
                    OfficeKind::Docx => office::docx_pages(&owned, &limits, cancel),
                    OfficeKind::Pptx => office::pptx_pages(&owned, &limits, cancel),
                    OfficeKind::Xlsx => office::xlsx_pages(&owned, &limits, cancel),
                })
                .await?;
                if extracted.iter().all(|p| p.text.trim().is_empty()) {
                    return Err(DocError::NoText);
                }
                let pages = extracted.len() as u32;
                if pages > self.cfg.max_pages {
                    return Err(DocError::TooManyPages {
                        pages,
                        limit: self.cfg.max_pages,
                    });
                }
                (pages, Layout::Extracted(extracted))
            }
        };
        let mut rec = match existing {
            Some(mut d) => {
                d.status = DocStatus::Ingesting;
                d
            }
            None => DocRecord {
                id: sha[..16].to_string(),
                name: name.to_string(),
                mime: kind.mime().to_string(),
                size: bytes.len() as u64,
                sha256: sha.clone(),
                pages,
                status: DocStatus::Ingesting,
                ingested_at_ms: now_ms(),
                page_status: vec![PageSource::Pending; pages as usize],
                chunks: 0,
                paged: match &layout {
                    Layout::Pdf(_) => true,
                    Layout::Extracted(p) => p.len() > 1,
                    Layout::Single => false,
                },
                page_labels: match &layout {
                    Layout::Extracted(p) => p.iter().filter_map(|p| p.label.clone()).collect(),
                    _ => Vec::new(),
                },
                partial: None,
                skipped: Skipped::default(),
            },
        };
        let resumed_pages = rec.page_status.iter().filter(|p| p.is_stored()).count() as u32;
        let resumed_chunks = rec.chunks;
        let retried_pages = rec.failed_pages();
        self.store.put(conv, &rec).await?;
        self.flush().await?;
        // A stop drops the work at its next await: every commit is one sled transaction and
        // `rec` is updated with it, so what `rec` says is what is stored.
        let result = tokio::select! {
            r = self.ingest_pages(conv, name, bytes, kind, &layout, &mut rec, progress) => r,
            _ = ticket.stop.cancelled() => Err(DocError::Cancelled),
        };
        match result {
            Ok(()) => {
                // Keep the file while pages failed, so `ingest --retry-failed` needs none.
                if rec.status == DocStatus::Ready {
                    self.store.remove_source(conv, &rec.id).await?;
                } else {
                    self.store.put_source(conv, &rec.id, bytes).await?;
                }
                self.flush().await?;
                let stored = rec.page_status.iter().filter(|p| p.is_stored()).count() as u32;
                metrics::counter!(crate::ops::metrics::DOCUMENTS).increment(1);
                metrics::counter!(crate::ops::metrics::PAGES)
                    .increment(stored.saturating_sub(resumed_pages).into());
                metrics::counter!(crate::ops::metrics::OCR_FAILURES)
                    .increment(rec.failed_pages().len() as u64);
                Ok(IngestReport {
                    doc: rec,
                    duplicate: false,
                    resumed_pages,
                    resumed_chunks,
                    retried_pages,
                })
            }
            Err(e) => {
                // Leave nothing half-stored unmarked: drop a document with nothing stored, mark
                // one with stored pages or chunks by what they say (sharing it again resumes).
                if rec.page_status.iter().any(PageSource::is_stored) || rec.partial.is_some() {
                    rec.status = rec.settled_status();
                    self.store.put(conv, &rec).await?;
                    self.store.put_source(conv, &rec.id, bytes).await?;
                } else {
                    self.store.clear_doc(conv, &rec.id).await?;
                }
                self.flush().await?;
                Err(e)
            }
        }
    }

    /// The conversation's documents with failed pages or an interrupted ingestion, oldest
    /// first; [`DocStore::source`] has the file of those whose file was kept.
    pub async fn retry_candidates(&self, conv: &str) -> Result<Vec<DocRecord>, DocError> {
        Ok(self
            .store
            .list(conv)
            .await?
            .into_iter()
            .filter(|d| d.status != DocStatus::Ready)
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    async fn ingest_pages(
        &self,
        conv: &str,
        name: &str,
        bytes: &[u8],
        kind: Kind,
        layout: &Layout,
        rec: &mut DocRecord,
        progress: &watch::Sender<String>,
    ) -> Result<(), DocError> {
        let pages = rec.pages;
        // Fail early, before any OCR work, if embeddings cannot be made. An image is OCR'd
        // while it is read; other files load the model once their text is known to need it
        // (a file of data only, or with too much text, is refused without it).
        if matches!(kind, Kind::Image(_)) {
            self.embedder().await?;
        }
        let todo: Vec<u32> = (1..=pages)
            .filter(|p| {
                !matches!(
                    rec.page_status[*p as usize - 1],
                    PageSource::Text | PageSource::Ocr { .. }
                )
            })
            .collect();
        let (read, need_ocr) = self
            .read_pages(&kind, bytes, name, layout, &todo, progress)
            .await?;
        let ocr = if need_ocr.is_empty() {
            None
        } else {
            self.page_ocr().await
        };
        let markdown = matches!(kind, Kind::Text(TextKind::Markdown) | Kind::Office(_));
        let chunker = &self.chunker;
        let chunk_page = move |page: ReadPage| {
            let chunked = chunker
                .chunk_page(
                    &page.text,
                    &page.source,
                    markdown,
                    &extract::Cancel::never(),
                )
                .expect("a chunker that is never cancelled does not fail");
            page_chunks(page, chunked)
        };
        // Text layers are chunked before any embedding, so a file with more text than one
        // document may hold is refused at once instead of after minutes of work. Up to 50 MB
        // of text: off the async workers, and stopped inside at the parse limit. The pages'
        // texts are dropped once chunked.
        let mut read: Vec<batch::PageChunks> = {
            let (chunker, limit) = (self.chunker.clone(), self.cfg.parse_timeout_secs);
            extract::blocking(Duration::from_secs(limit), move |cancel| {
                read.into_iter()
                    .map(|page| {
                        let chunked =
                            chunker.chunk_page(&page.text, &page.source, markdown, cancel)?;
                        Ok(page_chunks(page, chunked))
                    })
                    .collect::<Result<_, DocError>>()
            })
            .await?
        };
        self.resume_partial(conv, rec, &mut read).await?;
        let to_embed: usize = read.iter().map(|w| w.chunks.len()).sum();
        let total = rec.chunks as usize + to_embed;
        if total > self.cfg.max_chunks {
            return Err(DocError::TooMuchText {
                chunks: total,
                limit: self.cfg.max_chunks,
            });
        }
        if need_ocr.is_empty() && total == 0 {
            let mut skipped = rec.skipped;
            read.iter().for_each(|w| skipped.add(w.skipped));
            if !skipped.is_empty() {
                return Err(DocError::OnlyData { skipped });
            }
        }
        let embedder = self.embedder().await?;
        let meter = Meter {
            name,
            pages,
            to_embed,
            by_page: !need_ocr.is_empty(),
        };
        let scanned = match layout {
            Layout::Pdf(pdf) if !need_ocr.is_empty() => self
                .ocr_pages(name, pdf, need_ocr, ocr, progress)
                .map(chunk_page)
                .boxed(),
            _ => futures_util::stream::empty().boxed(),
        };
        let mut pages_in = futures_util::stream::iter(read).chain(scanned);
        // Each batch is embedded and committed (its chunks, and the record saying which pages
        // and how much of the page in progress are stored) before the next is made, so memory
        // holds one batch, and a crash loses at most the batch in flight.
        let mut batcher = batch::Batcher::new(batch::Cap {
            chunks: self.cfg.embed_batch,
            tokens: self.cfg.embed_batch_tokens,
            chunk_tokens: self.cfg.chunk_tokens,
        });
        let mut embedded = 0;
        while let Some(w) = pages_in.next().await {
            let alone = matches!(w.source, PageSource::Ocr { .. } | PageSource::Failed { .. });
            let ready = batcher.page(w, alone);
            for b in ready {
                embedded += b.chunks.len();
                self.commit_batch(conv, rec, b, embedder.as_ref()).await?;
                let _ = progress.send(meter.note(rec, embedded));
            }
        }
        if let Some(b) = batcher.finish() {
            self.commit_batch(conv, rec, b, embedder.as_ref()).await?;
        }
        let failed = rec.failed_pages().len();
        if failed as u32 == pages && rec.chunks == 0 {
            // Nothing readable at all.
            let reason = match rec.page_status.first() {
                Some(PageSource::Failed { reason }) => reason.clone(),
                _ => "no readable text".into(),
            };
            return Err(DocError::Ocr { reason });
        }
        rec.status = rec.settled_status();
        rec.ingested_at_ms = now_ms();
        self.store.commit(conv, rec, &[]).await?;
        self.flush().await?;
        tracing::info!(
            conversation = conv,
            document = name,
            pages,
            chunks = rec.chunks,
            skipped_bytes = rec.skipped.bytes,
            failed,
            "document ingested"
        );
        Ok(())
    }

    /// Goes on with a page an earlier ingestion stored part of: its stored chunks are dropped
    /// from `read`, which then starts after them. If the page no longer chunks the way it did
    /// (the chunk settings changed), its stored chunks are deleted and it starts over.
    async fn resume_partial(
        &self,
        conv: &str,
        rec: &mut DocRecord,
        read: &mut [batch::PageChunks],
    ) -> Result<(), DocError> {
        let Some(partial) = rec.partial else {
            return Ok(());
        };
        let stored = partial.chunks as usize;
        if let Some(w) = read.iter_mut().find(|w| w.page == partial.page) {
            let last = match stored.checked_sub(1) {
                Some(i) if i < w.chunks.len() => self
                    .store
                    .chunk_text(conv, &rec.id, partial.page, i as u32)
                    .await?
                    .filter(|t| *t == w.chunks[i].text),
                _ => None,
            };
            if last.is_some() {
                w.chunks.drain(..stored);
                w.from = partial.chunks;
                tracing::info!(
                    document = %rec.name,
                    page = partial.page,
                    stored,
                    "resuming within a page"
                );
                return Ok(());
            }
        }
        tracing::warn!(
            document = %rec.name,
            page = partial.page,
            "the half-stored page no longer chunks the same way; reading it again"
        );
        rec.chunks = rec.chunks.saturating_sub(partial.chunks);
        rec.partial = None;
        self.store.clear_page(conv, rec, partial.page).await
    }

    async fn commit_batch(
        &self,
        conv: &str,
        rec: &mut DocRecord,
        batch: batch::Batch,
        embedder: &dyn Embedder,
    ) -> Result<(), DocError> {
        let batch::Batch {
            chunks,
            done,
            partial,
            ..
        } = batch;
        let inputs: Vec<String> = chunks.iter().map(|p| batch::input(&p.chunk)).collect();
        let pending: Vec<_> = chunks
            .into_iter()
            .map(|p| (p.page, p.position, p.chunk))
            .collect();
        let vectors = if inputs.is_empty() {
            Vec::new()
        } else {
            embedder.embed(inputs).await?
        };
        if vectors.len() != pending.len() {
            return Err(DocError::Embed(EmbedError::Failed(format!(
                "{} vectors for {} chunks",
                vectors.len(),
                pending.len()
            ))));
        }
        let rows: Vec<NewChunk> = pending
            .into_iter()
            .zip(vectors)
            .map(|((page, position, c), vector)| NewChunk {
                page,
                record: ChunkRecord {
                    doc_id: rec.id.clone(),
                    name: rec.name.clone(),
                    page: rec.paged.then_some(page),
                    label: rec.page_labels.get(page as usize - 1).cloned(),
                    position,
                    heading: c.heading,
                    text: c.text,
                },
                vector,
            })
            .collect();
        for d in done {
            rec.page_status[d.page as usize - 1] = d.source;
            rec.skipped.add(d.skipped);
        }
        rec.partial = partial;
        rec.chunks += rows.len() as u32;
        rec.ingested_at_ms = now_ms();
        self.store.commit(conv, rec, &rows).await?;
        // On disk before the page is reported done: a crash loses no page it reported.
        self.flush().await
    }

    /// Reads the text of pages `todo`: text layers, OCR where there is none.
    async fn read_pages(
        &self,
        kind: &Kind,
        bytes: &[u8],
        name: &str,
        layout: &Layout,
        todo: &[u32],
        progress: &watch::Sender<String>,
    ) -> Result<(Vec<ReadPage>, Vec<u32>), DocError> {
        let parse_limit = Duration::from_secs(self.cfg.parse_timeout_secs);
        match kind {
            Kind::Text(t) => {
                // Off the async workers: decoding 50 MB would stall every conversation.
                let (owned, html) = (bytes.to_vec(), *t == TextKind::Html);
                let mut limits = extract::ReadLimits::for_documents(&self.cfg);
                // A text file holds no more characters than bytes, and its data runs are skipped
                // before the chunk limit counts: every text file within the size limit is read.
                limits.chars = limits.chars.max(self.cfg.max_file_bytes());
                let text = extract::blocking(parse_limit, move |cancel| {
                    let text = extract::decode_text(&owned, &limits, cancel)?;
                    if html {
                        extract::html_to_text(&text, cancel)
                    } else {
                        Ok(text)
                    }
                })
                .await?;
                if text.trim().is_empty() {
                    return Err(DocError::NoText);
                }
                Ok((
                    vec![ReadPage {
                        page: 1,
                        text,
                        source: PageSource::Text,
                    }],
                    Vec::new(),
                ))
            }
            Kind::Image(img) => {
                let Some(ocr) = self.ocr_engine().await else {
                    return Err(DocError::Ocr {
                        reason: "no OCR is available: the vision endpoint does not answer and tesseract is not installed".into(),
                    });
                };
                let _ = progress.send(format!("Reading {name} with the {}…", ocr.name()));
                let text = ocr.transcribe(bytes, img.mime()).await?;
                Ok((
                    vec![ReadPage {
                        page: 1,
                        text,
                        source: PageSource::Ocr {
                            engine: ocr.name().into(),
                        },
                    }],
                    Vec::new(),
                ))
            }
            Kind::Office(_) => {
                let Layout::Extracted(all) = layout else {
                    unreachable!("an Office document is extracted before its pages are read")
                };
                let pages = todo
                    .iter()
                    .map(|&p| ReadPage {
                        page: p,
                        text: all[p as usize - 1].text.clone(),
                        source: PageSource::Text,
                    })
                    .collect();
                Ok((pages, Vec::new()))
            }
            Kind::Pdf => {
                let Layout::Pdf((path, _)) = layout else {
                    unreachable!("a PDF is measured before its pages are read")
                };
                let (Some(&first), Some(&last)) = (todo.first(), todo.last()) else {
                    return Ok((Vec::new(), Vec::new()));
                };
                let limits = extract::ReadLimits::for_documents(&self.cfg);
                let texts = extract::pdf_text(path, first, last, parse_limit, &limits).await?;
                let mut pages = Vec::new();
                let mut need_ocr = Vec::new();
                for &p in todo {
                    let t = &texts[(p - first) as usize];
                    if extract::has_text_layer(t) {
                        pages.push(ReadPage {
                            page: p,
                            text: t.clone(),
                            source: PageSource::Text,
                        });
                    } else {
                        need_ocr.push(p);
                    }
                }
                Ok((pages, need_ocr))
            }
        }
    }
}

/// What the first read of a file learned, handed on to the page reader.
enum Layout {
    /// One page: a text file or an image.
    Single,
    /// A PDF written to a temporary file, with its page facts.
    Pdf((std::path::PathBuf, extract::PdfInfo)),
    /// Pages already extracted (an Office document: Word's pages, slides or sheets).
    Extracted(Vec<office::OfficePage>),
}

/// "2, 5, 7".
fn page_list(pages: &[u32]) -> String {
    pages
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
