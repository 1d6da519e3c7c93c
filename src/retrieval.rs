//! The one passage type and the [`Retriever`] trait: the passages the engine asks of a
//! conversation's documents for a turn. It is a leaf: `llm` (the prompt), `engine` and `docs`
//! use it and it uses none of them. `docs::service::DocumentService` extends it with the rest
//! of what the engine does with files; tests hand the engine a bare `Retriever`.

use anchorbot_platform::ConversationKey;
use serde::Serialize;

/// A passage from a conversation's documents, with the tag that cites it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Passage {
    /// Relevance (cosine similarity for dense search).
    pub score: f32,
    /// File name.
    pub name: String,
    /// Page, for paged documents.
    pub page: Option<u32>,
    /// Citation tag, e.g. `report.pdf p.3`.
    pub citation: String,
    /// Nearest heading above the passage.
    pub heading: Option<String>,
    /// The quoted text.
    pub text: String,
}

/// Finds the passages of a conversation's documents most relevant to a question: the
/// documents' context for a turn, and the quoted fallback when the reasoning model is offline.
#[async_trait::async_trait]
pub trait Retriever: Send + Sync {
    /// The `k` best passages for `query`, best first, from `key`'s documents only. Empty when
    /// the conversation has none; a failure is logged and also gives none, so a turn can
    /// still be answered from memory.
    async fn passages(&self, key: &ConversationKey, query: &str, k: usize) -> Vec<Passage>;
}
