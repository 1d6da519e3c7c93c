//! Finding passages in a conversation's documents: the search entry points of [`Documents`],
//! over the conversation's index ([`index`]: vectors scanned by the `dense` kernels, and
//! [`lexical`] BM25), ranked and fused ([`fusion`]), and quoted with their neighbours
//! ([`quote`]).

mod dense;
pub mod fusion;
pub mod index;
pub mod lexical;
pub mod quote;

pub use fusion::{best_per_page, score_fusion, weighted_rrf, RRF_K};
use fusion::{rank, Fusion};
pub use quote::{join_overlapping, passages, runs_on};

use super::{rerank, DocError, Documents};
use crate::retrieval::Passage;
use crate::settings::RerankChoice;

/// Candidates taken from each of dense and lexical search before fusion.
pub const CANDIDATES: usize = 50;
/// Passages the reranker orders.
pub const RERANK_POOL: usize = 20;

/// How passages are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Embedding similarity only.
    Dense,
    /// BM25 over the chunks' words only.
    Lexical,
    /// Both, fused by reciprocal rank.
    Fused,
    /// Fused, then ordered by the reasoning model.
    Reranked,
}

impl Documents {
    /// Searches the conversation's documents the configured way.
    pub async fn search(
        &self,
        conv: &str,
        query: &str,
        k: usize,
    ) -> Result<Vec<Passage>, DocError> {
        let mode = match self.cfg.rerank {
            RerankChoice::Off => SearchMode::Fused,
            RerankChoice::Llm => SearchMode::Reranked,
        };
        self.search_mode(conv, query, k, mode).await
    }

    /// Searches the conversation's documents with one of the retrieval methods (the
    /// retrieval benchmark compares them). Without embeddings (the model missing or its
    /// endpoint down) the search is lexical only, and says so in the log.
    pub async fn search_mode(
        &self,
        conv: &str,
        query: &str,
        k: usize,
        mode: SearchMode,
    ) -> Result<Vec<Passage>, DocError> {
        if k == 0 || self.store.list(conv).await?.is_empty() {
            return Ok(Vec::new());
        }
        // The index is fetched (built, on the first search) and the lexical search run on the
        // blocking pool while the question is embedded: on a small machine the embedding is
        // most of a search's time, and the words need no vector.
        let early = {
            let (store, conv, query) = (self.store.clone(), conv.to_string(), query.to_string());
            tokio::task::spawn_blocking(move || -> Result<_, DocError> {
                let idx = store.index(&conv)?;
                let lexical = if mode == SearchMode::Dense {
                    Vec::new()
                } else {
                    idx.lexical(&query, CANDIDATES)
                };
                Ok((idx, lexical))
            })
        };
        let vector = if mode == SearchMode::Lexical {
            None
        } else {
            match self.embed_query(query).await {
                Ok(v) => Some(v),
                Err(e) if mode == SearchMode::Dense => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(error = %e, "no query embedding; searching by words only");
                    None
                }
            }
        };
        let (idx, lexical) = early.await.map_err(DocError::Task)??;
        let rerank = match (&self.reranker, mode) {
            (Some(r), SearchMode::Reranked) => Some(r.clone()),
            _ => None,
        };
        let pool = if rerank.is_some() {
            RERANK_POOL.max(k)
        } else {
            k
        };
        let fusion = Fusion::of(&self.cfg);
        let Some(reranker) = rerank else {
            // Ranked and quoted in one task: a hop to the blocking pool less on every search.
            let (store, conv) = (self.store.clone(), conv.to_string());
            return tokio::task::spawn_blocking(move || {
                let mut hits = rank(&idx, vector.as_deref(), &lexical, mode, pool, fusion);
                hits.truncate(k);
                passages(&store, &conv, &idx, &hits)
            })
            .await
            .map_err(DocError::Task)?;
        };
        let (idx, mut hits) = tokio::task::spawn_blocking(move || {
            let ranked = rank(&idx, vector.as_deref(), &lexical, mode, pool, fusion);
            (idx, ranked)
        })
        .await
        .map_err(DocError::Task)?;
        let mut candidates = Vec::with_capacity(hits.len());
        for &(_, row) in &hits {
            if let Some(c) = self.store.chunk(conv, &idx, row).await? {
                candidates.push(rerank::Candidate {
                    label: c.citation(),
                    text: c.text,
                });
            }
        }
        if candidates.len() == hits.len() {
            if let Some(order) = reranker.rerank(query, &candidates).await {
                hits = order
                    .into_iter()
                    .filter_map(|i| hits.get(i).copied())
                    .collect();
            }
        }
        hits.truncate(k);
        let (store, conv) = (self.store.clone(), conv.to_string());
        tokio::task::spawn_blocking(move || passages(&store, &conv, &idx, &hits))
            .await
            .map_err(DocError::Task)?
    }
}

#[async_trait::async_trait]
impl crate::retrieval::Retriever for Documents {
    async fn passages(
        &self,
        key: &anchorbot_platform::ConversationKey,
        query: &str,
        k: usize,
    ) -> Vec<Passage> {
        match self.search(&key.to_string(), query, k).await {
            Ok(hits) => hits,
            Err(e) => {
                tracing::warn!(conversation = %key, error = %e, "passages unavailable");
                Vec::new()
            }
        }
    }
}
