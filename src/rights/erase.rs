//! Erasing one conversation from the store, shared by `forget` and retention.

use anchorbot_platform::ConversationKey;
use serde::Serialize;

use super::RightsError;
use crate::docs::store::DocStore;
use crate::store::{Store, StoreError};

/// What was erased.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    /// Turns the conversation had (since its last `/clear`, summarized ones included).
    pub turns: u64,
    /// Rolling summaries.
    pub summaries: u64,
    /// Key facts.
    pub facts: u64,
    /// Documents.
    pub documents: u64,
    /// Document chunks.
    pub chunks: u64,
    /// Chunk vectors.
    pub vectors: u64,
    /// Every record removed, of every kind (anchor, de-duplication log, kept files, …).
    pub records: u64,
    /// Bytes of keys and values removed.
    pub bytes: u64,
}

impl Erased {
    /// Whether anything was stored.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

/// Erases everything of `key` from the store, durably: its documents, chunks, vectors, kept
/// files and anchor in one transaction (through `docs`, which also drops its in-memory index
/// of the conversation), and its de-duplication marks.
///
/// On sled the bytes stay in its log until the store is compacted; on PostgreSQL the rows
/// are deleted and the database reclaims their space itself (see the README).
pub async fn erase(
    store: &Store,
    docs: &DocStore,
    key: &ConversationKey,
) -> Result<Erased, RightsError> {
    let conv = key.to_string();
    let mut out = Erased::default();
    match store.anchor(key).await {
        Ok(a) => {
            out.turns = a.counters.turns_total.max(a.turns.len() as u64);
            out.summaries = a.summaries.len() as u64;
            out.facts = a.facts.len() as u64;
        }
        // An unreadable anchor is erased all the same.
        Err(StoreError::Corrupt { .. }) => {
            tracing::warn!("an unreadable anchor is being erased; its counts are unknown");
        }
        Err(e) => return Err(e.into()),
    }
    let size = docs.erase(&conv).await?;
    out.documents = size.documents;
    out.chunks = size.chunks;
    out.vectors = size.vectors;
    out.records = size.records;
    out.bytes = size.bytes;
    Ok(out)
}
