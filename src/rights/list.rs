//! `anchorbot conversations`: every conversation in the store with its last activity and
//! size, most recent first.

use serde::Serialize;

use super::RightsError;
use crate::docs::store::DocStore;
use crate::store::{Anchor, Store};

/// One conversation in the listing.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationInfo {
    /// The key, as `export` and `forget` take it.
    pub key: String,
    /// The latest turn, summary, vote or document ingestion (Unix ms); 0 when unknown.
    pub last_activity_ms: u64,
    /// Records of every kind.
    pub records: u64,
    /// Bytes of keys and values (the backend's own overhead not counted).
    pub bytes: u64,
    /// Recent turns kept verbatim.
    pub turns: u64,
    /// Turns since the last `/clear`.
    pub turns_total: u64,
    /// Rolling summaries.
    pub summaries: u64,
    /// Key facts.
    pub facts: u64,
    /// Documents.
    pub documents: u64,
    /// Document chunks.
    pub chunks: u64,
}

/// The latest time recorded in an anchor (Unix ms).
pub fn anchor_activity(a: &Anchor) -> u64 {
    let turns = a
        .turns
        .iter()
        .flat_map(|t| std::iter::once(t.at_ms).chain(t.feedback.iter().map(|v| v.at_ms)));
    turns
        .chain(a.summaries.iter().map(|s| s.at_ms))
        .max()
        .unwrap_or(0)
}

/// Each conversation's last activity (Unix ms), from its anchor and its documents only: what
/// retention needs, without reading every chunk and vector as [`conversations`] does.
pub async fn activity(store: &Store, docs: &DocStore) -> Result<Vec<(String, u64)>, RightsError> {
    let mut latest = docs.last_ingested().await?;
    for key in store.conversations().await? {
        let at = match key.parse() {
            Ok(k) => store.anchor(&k).await.map_or(0, |a| anchor_activity(&a)),
            Err(_) => 0,
        };
        let e = latest.entry(key).or_default();
        *e = (*e).max(at);
    }
    Ok(latest.into_iter().collect())
}

/// Every conversation with something stored, most recently active first.
pub async fn conversations(store: &Store) -> Result<Vec<ConversationInfo>, RightsError> {
    let mut out = Vec::new();
    for size in store.storage().maintenance.sizes().await? {
        let anchor = match size.conv.parse() {
            Ok(k) => store.anchor(&k).await.unwrap_or_default(),
            Err(_) => Anchor::default(),
        };
        out.push(ConversationInfo {
            last_activity_ms: anchor_activity(&anchor).max(size.last_ingested_ms),
            records: size.records,
            bytes: size.bytes,
            turns: anchor.turns.len() as u64,
            turns_total: anchor.counters.turns_total,
            summaries: anchor.summaries.len() as u64,
            facts: anchor.facts.len() as u64,
            documents: size.documents,
            chunks: size.chunks,
            key: size.conv,
        });
    }
    out.sort_by(|a, b| {
        b.last_activity_ms
            .cmp(&a.last_activity_ms)
            .then(a.key.cmp(&b.key))
    });
    Ok(out)
}
