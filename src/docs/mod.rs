//! Documents shared in a conversation: ingest (sniff, text layer, OCR), chunk, embed, store
//! scoped to the conversation, and retrieve with citations.
//!
//! Ingestion is resumable: a document record is written first with status `ingesting`, pages
//! are committed in batches together with their chunks and vectors, and the record is marked
//! `ready` (or `partial`) at the end. A crash leaves it `incomplete`; sharing the same file
//! again resumes from the pages already stored.
//!
//! One job a file: this module holds the [`Documents`] facade and its small accessors;
//! `ingest` reads, chunks, embeds and commits a file (batched by `batch`, with the model
//! on `model_thread`, stopped through `running`); [`ocr`] reads scanned pages; [`office`],
//! [`extract`] and [`sniff`] read formats; [`search`] finds and quotes passages; [`store`]
//! keeps records, chunks and vectors; `error` says why a document could not be read; [`service`]
//! is the [`DocumentService`] trait the engine holds, implemented by [`Documents`].

mod batch;
pub mod chunk;
pub mod data_runs;
pub mod embed;
mod error;
pub mod extract;
mod ingest;
mod model_thread;
pub mod ocr;
pub mod office;
pub mod rerank;
mod running;
pub mod search;
pub mod service;
pub mod sniff;
pub mod store;

use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::llm::tokens::TokenCounter;
use crate::settings::{DocumentSettings, EmbedderKind, Endpoint};
use chunk::Chunker;
pub use data_runs::Skipped;
use embed::{EmbedError, Embedder, LocalEmbedder, OpenAiEmbedder};
pub use error::DocError;
pub use search::SearchMode;
pub use service::{DocumentService, IngestReport};
pub use store::{DocRecord, DocStatus, DocStore, PageSource, PartialPage};

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
        self.anchors.flush().await.map_err(DocError::from)
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
}
