//! The team's data rights over what anchorbot stores: export a conversation, forget it
//! (erased from the store, then from the disk by compaction where the backend needs one),
//! back the store up and restore it, list the conversations, and forget idle ones after
//! `retention_days`.
//!
//! These commands open the store themselves, never through [`crate::App`]: on sled, forget
//! and restore replace the store directory, which needs every handle on it closed, and sled
//! lets one process at a time open a store, so they refuse with [`RightsError::InUse`] while
//! the bot runs. On PostgreSQL they work beside running bots.

pub mod cli;
pub mod erase;
pub mod export;
pub mod list;
pub mod retention;

use std::path::{Path, PathBuf};

use anchorbot_platform::ConversationKey;

use crate::docs::store::DocStore;
use crate::storage::{Location, StorageError};
use crate::store::Store;

pub use erase::Erased;

/// Why a data-rights command could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum RightsError {
    /// Another process (a running bot) holds the store.
    #[error(
        "the store at {path} is in use by a running anchorbot (sled lets one process open it at a time). \
         Stop the bot first (e.g. `systemctl stop anchorbot` or `docker compose stop anchorbot`), \
         run this command, then start it again"
    )]
    InUse {
        /// The data directory.
        path: PathBuf,
    },
    /// The key is neither a conversation key nor a console conversation name.
    #[error("{0}")]
    BadKey(String),
    /// No store exists where one is needed.
    #[error("there is no store at {path}")]
    NoStore {
        /// The data directory.
        path: PathBuf,
    },
    /// `restore` would overwrite conversations.
    #[error(
        "the store at {path} already holds {conversations} conversation(s); restoring would replace them. \
         Pass --force to replace it (back it up first with `anchorbot backup FILE`)"
    )]
    NotEmpty {
        /// The data directory.
        path: PathBuf,
        /// Conversations in it.
        conversations: usize,
    },
    /// `forget` was not confirmed.
    #[error("nothing was erased: confirm with --yes (or answer y at the prompt)")]
    NotConfirmed,
    /// The store failed (a bad backup file is one of these).
    #[error(transparent)]
    Store(StorageError),
    /// The documents failed.
    #[error("document store: {0}")]
    Docs(#[from] crate::docs::DocError),
    /// `store copy` failed.
    #[error(transparent)]
    Copy(#[from] crate::storage::copy::CopyError),
    /// Records of the conversation were still stored after it was forgotten.
    #[error("{records} records of {key} are still stored after forget")]
    NotErased {
        /// The conversation.
        key: String,
        /// Records left.
        records: u64,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

impl RightsError {
    /// An I/O failure on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The conversation named as the user sees it: a full key as `anchorbot conversations` prints
/// it (`slack:T1/C2/1712345678.000100`, `console:team`), or a console conversation's name as
/// `ask`, `status` and `clear` take it (`team`).
pub fn parse_key(text: &str) -> Result<ConversationKey, RightsError> {
    let parsed = if text.contains(':') {
        text.parse::<ConversationKey>().map_err(|e| e.to_string())
    } else {
        ConversationKey::console(text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| {
        RightsError::BadKey(format!(
            "bad conversation {text:?}: {e}. Use a key as `anchorbot conversations` prints it, or a console conversation name"
        ))
    })
}

impl From<StorageError> for RightsError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Locked { path } => RightsError::InUse { path },
            e => RightsError::Store(e),
        }
    }
}

/// The store and its documents.
pub struct Opened {
    /// The conversations.
    pub store: Store,
    /// The documents.
    pub docs: DocStore,
}

/// Opens the store at `location` (migrating it), with a lock conflict told as
/// [`RightsError::InUse`].
pub async fn open(location: &Location) -> Result<Opened, RightsError> {
    let storage = location.open().await?;
    let docs = DocStore::new(storage.clone());
    // sled: no bot holds the store now, so a document still "being read" was interrupted. A
    // database may be shared with a running bot whose reads are live: left as they are.
    if !location.is_database() {
        docs.recover().await?;
    }
    Ok(Opened {
        store: Store::new(storage),
        docs,
    })
}
