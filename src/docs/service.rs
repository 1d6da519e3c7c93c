//! The documents service as the engine sees it: the data its operations return.

use super::DocRecord;

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
