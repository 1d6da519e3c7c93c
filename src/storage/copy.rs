//! `anchorbot store copy`: copies one store into another through the seam (in practice the
//! sled store of the data directory into PostgreSQL): every anchor, document record, chunk
//! with its vector, and kept file. De-duplication marks are not copied: they only matter for
//! a day, while a platform may still redeliver an event, and the bot is stopped for a copy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{DocRow, Durability, Storage, StorageError};

/// Chunks written per transaction: a big document is copied in several.
const CHUNKS_PER_WRITE: usize = 512;

/// What a copy moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    /// Conversations with an anchor or documents.
    pub conversations: u64,
    /// Anchors (memories).
    pub anchors: u64,
    /// Document records.
    pub documents: u64,
    /// Chunks, each with its vector.
    pub chunks: u64,
    /// Kept files.
    pub sources: u64,
    /// Bytes of records, vectors and files written.
    pub bytes: u64,
    /// Time taken (ms).
    pub elapsed_ms: u64,
}

/// Why a copy did not start or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target already holds conversations.
    #[error("the target store already holds {0} conversation(s); copying would mix two stores. Copy into an empty database, or pass --force to overwrite what the source also holds")]
    NotEmpty(usize),
    /// A store failed; what was copied so far stays (a copy can be run again with --force).
    #[error("{0}")]
    Store(#[from] StorageError),
    /// The target does not hold what was copied.
    #[error("the copy does not match its source: {0}")]
    Mismatch(String),
}

/// Copies everything in `from` into `to`, telling `progress` after each document. Refuses a
/// target with conversations unless `force`. Checks at the end that the target holds, for
/// each conversation copied, as many documents and chunks as the source.
pub async fn copy(
    from: &Storage,
    to: &Storage,
    force: bool,
    mut progress: impl FnMut(&CopyReport),
) -> Result<CopyReport, CopyError> {
    let started = Instant::now();
    let existing = to.maintenance.sizes().await?.len();
    if existing > 0 && !force {
        return Err(CopyError::NotEmpty(existing));
    }
    let mut report = CopyReport::default();
    let mut convs: BTreeMap<String, Vec<DocRow>> = BTreeMap::new();
    for conv in from.conversations.anchored().await? {
        convs.entry(conv).or_default();
    }
    for (conv, row) in from.documents.all_records().await? {
        convs.entry(conv).or_default().push(row);
    }
    for (conv, docs) in &convs {
        report.conversations += 1;
        if let Some(anchor) = from.conversations.anchor(conv).await? {
            report.bytes += anchor.len() as u64;
            let edit = |_: Option<&[u8]>| Ok(anchor.clone());
            to.conversations
                .update_anchor(conv, None, Durability::Lazy, &edit)
                .await?;
            report.anchors += 1;
        }
        for doc in docs {
            let chunks = from.documents.document_chunks(conv, &doc.doc).await?;
            // Each batch is written with the record, in one transaction. A copy cut short
            // (and then the count check) is finished by running it again with --force, which
            // writes every row again.
            if chunks.is_empty() {
                to.documents.put_record(conv, doc).await?;
            }
            for batch in chunks.chunks(CHUNKS_PER_WRITE) {
                report.chunks += batch.len() as u64;
                report.bytes += batch
                    .iter()
                    .map(|c| (c.record.len() + c.vector.len()) as u64)
                    .sum::<u64>();
                to.documents.commit(conv, doc, batch).await?;
            }
            report.documents += 1;
            report.bytes += doc.record.len() as u64;
            if let Some(file) = from.documents.source(conv, &doc.doc).await? {
                report.bytes += file.len() as u64;
                to.documents.put_source(conv, &doc.doc, &file).await?;
                report.sources += 1;
            }
            report.elapsed_ms = millis(started.elapsed());
            progress(&report);
        }
    }
    to.conversations.flush().await?;
    for conv in convs.keys() {
        let (a, b) = (
            from.documents.counts(conv).await?,
            to.documents.counts(conv).await?,
        );
        if a != b {
            return Err(CopyError::Mismatch(format!(
                "{conv} has {} documents and {} chunks in the source, {} and {} in the target",
                a.0, a.1, b.0, b.1
            )));
        }
    }
    report.elapsed_ms = millis(started.elapsed());
    Ok(report)
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}
