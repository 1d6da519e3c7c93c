//! `anchorbot conversations`: every conversation in the store with its last activity and
//! size, most recent first.

use std::collections::BTreeMap;

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
    /// Records across every tree.
    pub records: u64,
    /// Bytes of keys and values across every tree (sled's own overhead not counted).
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

/// The conversation part of a record key: all of an anchor key, the part before the first
/// `\0` elsewhere.
fn conversation_of(key: &[u8]) -> &[u8] {
    key.split(|b| *b == 0).next().unwrap_or(key)
}

/// Each conversation's last activity (Unix ms), from its anchor and its documents only: what
/// retention needs, without reading every chunk and vector as [`conversations`] does.
pub fn activity(store: &Store, docs: &DocStore) -> Result<Vec<(String, u64)>, RightsError> {
    let mut latest = docs.last_ingested()?;
    for key in store.conversations()? {
        let at = key
            .parse()
            .ok()
            .and_then(|k| store.anchor(&k).ok())
            .map_or(0, |a| anchor_activity(&a));
        let e = latest.entry(key).or_default();
        *e = (*e).max(at);
    }
    Ok(latest.into_iter().collect())
}

/// Every conversation with something stored, most recently active first.
pub fn conversations(store: &Store) -> Result<Vec<ConversationInfo>, RightsError> {
    let db = store.db();
    // Sizes per conversation in one pass over every tree.
    let mut sizes: BTreeMap<Vec<u8>, (u64, u64)> = BTreeMap::new();
    let mut docs: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut chunks: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut ingested: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for name in db.tree_names() {
        // The metadata and the default tree hold no conversation.
        if name.as_ref() == anchorbot_migrations::META_TREE.as_bytes()
            || name.as_ref() == b"__sled__default"
        {
            continue;
        }
        let tree = db.open_tree(&name)?;
        for item in tree.iter() {
            let (k, v) = item?;
            let conv = conversation_of(&k).to_vec();
            let e = sizes.entry(conv.clone()).or_default();
            e.0 += 1;
            e.1 += (k.len() + v.len()) as u64;
            match name.as_ref() {
                b"docs" => {
                    *docs.entry(conv.clone()).or_default() += 1;
                    if let Ok(r) = serde_json::from_slice::<crate::docs::DocRecord>(&v) {
                        let at = ingested.entry(conv).or_default();
                        *at = (*at).max(r.ingested_at_ms);
                    }
                }
                b"chunks" => *chunks.entry(conv).or_default() += 1,
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    for (conv, (records, bytes)) in sizes {
        let key = String::from_utf8_lossy(&conv).into_owned();
        let anchor = key
            .parse()
            .ok()
            .and_then(|k| store.anchor(&k).ok())
            .unwrap_or_default();
        out.push(ConversationInfo {
            last_activity_ms: anchor_activity(&anchor)
                .max(ingested.get(&conv).copied().unwrap_or(0)),
            records,
            bytes,
            turns: anchor.turns.len() as u64,
            turns_total: anchor.counters.turns_total,
            summaries: anchor.summaries.len() as u64,
            facts: anchor.facts.len() as u64,
            documents: docs.get(&conv).copied().unwrap_or(0),
            chunks: chunks.get(&conv).copied().unwrap_or(0),
            key,
        });
    }
    out.sort_by(|a, b| {
        b.last_activity_ms
            .cmp(&a.last_activity_ms)
            .then(a.key.cmp(&b.key))
    });
    Ok(out)
}
