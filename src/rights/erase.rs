//! Erasing one conversation from every tree of the store, shared by `forget` and retention.

use anchorbot_platform::ConversationKey;
use serde::Serialize;

use super::{belongs, RightsError};
use crate::docs::store::{conv_prefix, DocStore};
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
    /// Every record removed, in every tree (anchor, de-duplication log, kept files, …).
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

/// Erases everything of `key` from every tree of the store, then flushes. The documents,
/// chunks, vectors, kept files and anchor go in one transaction (through `docs`, which also
/// drops its in-memory index of the conversation); then every tree the database has,
/// whatever its name, is scanned for records left under the key and they are removed.
///
/// The bytes stay in sled's log until the store is compacted (see [`super::swap`]). The
/// scans run on the blocking pool.
pub async fn erase(
    store: &Store,
    docs: &DocStore,
    key: &ConversationKey,
) -> Result<Erased, RightsError> {
    let (s, d, k) = (store.clone(), docs.clone(), key.clone());
    let erased = tokio::task::spawn_blocking(move || erase_records(&s, &d, &k))
        .await
        .map_err(|e| RightsError::Sled(sled::Error::ReportableBug(format!("erase task: {e}"))))??;
    store.flush().await?;
    Ok(erased)
}

/// [`erase`] without the flush, on the calling thread.
pub fn erase_records(
    store: &Store,
    docs: &DocStore,
    key: &ConversationKey,
) -> Result<Erased, RightsError> {
    let conv = key.to_string();
    let db = store.db();
    let mut out = Erased::default();
    match store.anchor(key) {
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
    out.documents = docs.doc_count(&conv) as u64;
    out.chunks = docs.chunk_count(&conv) as u64;
    out.vectors = docs.vector_count(&conv) as u64;

    (out.records, out.bytes) = tree_bytes(&db, &conv)?;

    let (anchors, anchor_key) = store.anchor_slot(key);
    docs.clear_with(&conv, anchors, &anchor_key)?;
    let prefix = conv_prefix(&conv);
    for name in db.tree_names() {
        let tree = db.open_tree(&name)?;
        let mut batch = sled::Batch::default();
        let mut any = false;
        if tree.contains_key(conv.as_bytes())? {
            batch.remove(conv.as_bytes());
            any = true;
        }
        for k in tree.scan_prefix(&prefix).keys() {
            batch.remove(k?);
            any = true;
        }
        if any {
            tree.apply_batch(batch)?;
        }
    }
    Ok(out)
}

/// Records and bytes (keys and values) of `conv` across every tree.
pub fn tree_bytes(db: &sled::Db, conv: &str) -> Result<(u64, u64), sled::Error> {
    let (mut records, mut bytes) = (0, 0);
    let prefix = conv_prefix(conv);
    for name in db.tree_names() {
        let tree = db.open_tree(&name)?;
        if let Some(v) = tree.get(conv.as_bytes())? {
            records += 1;
            bytes += (conv.len() + v.len()) as u64;
        }
        for item in tree.scan_prefix(&prefix) {
            let (k, v) = item?;
            debug_assert!(belongs(&k, conv));
            records += 1;
            bytes += (k.len() + v.len()) as u64;
        }
    }
    Ok((records, bytes))
}
