//! Why a document could not be read or searched. The failures of storage, I/O and the
//! blocking pool keep their source errors.

use super::embed::EmbedError;
use super::extract;
use super::Skipped;
use crate::storage::StorageError;

/// Why a document could not be read; every variant is a message for the person who shared it.
#[derive(Debug, thiserror::Error)]
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
    /// Storage failed (the documents' store, or flushing the main store to disk).
    #[error("storage error: {0}")]
    Store(#[from] StorageError),
    /// A search task on the blocking pool panicked or was cancelled.
    #[error("storage error: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// A reading task on the blocking pool panicked or was cancelled.
    #[error("I/O error: the reader stopped: {0}")]
    ReaderStopped(#[source] tokio::task::JoinError),
    /// Local I/O failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn storage_and_io_failures_keep_their_source() {
        let e = DocError::from(StorageError::Schema("column missing".into()));
        assert_eq!(
            e.to_string(),
            "storage error: cannot upgrade the store's schema: column missing"
        );
        let source = e.source().expect("a storage error has its source");
        assert!(
            matches!(
                source.downcast_ref::<StorageError>(),
                Some(StorageError::Schema(s)) if s == "column missing"
            ),
            "{source:?}"
        );

        let e = DocError::from(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "disk full",
        ));
        assert_eq!(e.to_string(), "I/O error: disk full");
        let io = e
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("an I/O error has its source");
        assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn a_message_for_the_person_has_no_source() {
        let e = DocError::Corrupt {
            reason: "bad header".into(),
        };
        assert!(e.source().is_none());
        assert_eq!(
            e.to_string(),
            "the file looks damaged or truncated (bad header)"
        );
    }

    #[tokio::test]
    async fn a_task_that_panicked_is_a_storage_error_with_the_join_error_as_source() {
        let join = tokio::task::spawn(async { panic!("boom") })
            .await
            .expect_err("the task panicked");
        let e = DocError::Task(join);
        assert!(e.to_string().starts_with("storage error: "), "{e}");
        let source = e.source().expect("the join error");
        assert!(source
            .downcast_ref::<tokio::task::JoinError>()
            .is_some_and(|j| j.is_panic()));
        let join = tokio::task::spawn(async { panic!("boom") })
            .await
            .expect_err("the task panicked");
        let e = DocError::ReaderStopped(join);
        assert!(
            e.to_string().starts_with("I/O error: the reader stopped: "),
            "{e}"
        );
        assert!(e.source().is_some());
    }
}
