//! Store failures, the same for every backend, with the variants a caller acts on.

use std::path::PathBuf;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Another process holds the data directory (sled lets one process open it at a time).
    #[error("the data directory {path} is in use by another anchorbot process; stop it or use another data_dir")]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// The store could not be opened. Nothing was deleted.
    #[error("cannot open the store at {location}: {reason}. The data was left untouched")]
    Open {
        /// Where (a directory, or a database URL without its password).
        location: String,
        /// What failed.
        reason: String,
    },
    /// The database does not answer (down, unreachable, refused the credentials).
    #[error("the database at {location} is unavailable: {reason}")]
    Unavailable {
        /// The database URL without its password.
        location: String,
        /// What failed.
        reason: String,
    },
    /// The schema could not be brought up to date.
    #[error("cannot upgrade the store's schema: {0}")]
    Schema(String),
    /// The store was written by a newer anchorbot.
    #[error("the store's schema is version {found}, newer than this anchorbot understands ({supported}); upgrade anchorbot, or restore a backup made by this version")]
    SchemaTooNew {
        /// The store's version.
        found: i64,
        /// The newest this binary knows.
        supported: i64,
    },
    /// A record does not decode.
    #[error("the stored {what} is unreadable: {reason}")]
    Corrupt {
        /// Which record (a conversation key, a document).
        what: String,
        /// Decoder message.
        reason: String,
    },
    /// Compaction failed; the store was left as it was.
    #[error("cannot compact the store at {path}: {reason}")]
    Compaction {
        /// The data directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The backend cannot do this; `hint` says what does.
    #[error("{what} is not available with {backend}: {hint}")]
    Unsupported {
        /// The operation.
        what: &'static str,
        /// The backend.
        backend: &'static str,
        /// What to use instead.
        hint: &'static str,
    },
    /// A file beside the store (a backup, a compaction marker) could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A backup file cannot be restored.
    #[error("{path} is not a usable anchorbot backup: {reason}. Nothing was changed")]
    BadBackup {
        /// The backup file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Any other failure of the backend.
    #[error("storage error: {0}")]
    Backend(String),
}

impl StorageError {
    /// An I/O failure on `path`.
    pub fn file(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::File {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A failure of the backend, from its own error.
    pub fn backend(e: impl std::fmt::Display) -> Self {
        Self::Backend(e.to_string())
    }
}
