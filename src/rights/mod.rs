//! The team's data rights over what anchorbot stores: export a conversation, forget it
//! (erased from every tree, then from the disk by compaction), back the store up and restore
//! it, list the conversations, and forget idle ones after `retention_days`.
//!
//! These commands open the store themselves, never through [`crate::App`]: forget and restore
//! replace the store directory (see [`swap`]), which needs every handle on it closed. sled
//! lets one process at a time open a store, so they refuse with [`RightsError::InUse`] while
//! the bot runs.

pub mod backup;
pub mod cli;
pub mod erase;
pub mod export;
pub mod list;
pub mod retention;
pub mod swap;

use std::path::{Path, PathBuf};

use anchorbot_platform::ConversationKey;

use crate::docs::store::DocStore;
use crate::store::{Store, StoreError};

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
    /// The file given to `restore` is not a backup this anchorbot can read.
    #[error("{path} is not a usable anchorbot backup: {reason}. Nothing was changed")]
    BadBackup {
        /// The backup file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
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
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The document trees failed.
    #[error("document store: {0}")]
    Docs(#[from] crate::docs::DocError),
    /// sled failed.
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
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

/// Whether a store was ever written in `dir`.
pub fn store_exists(dir: &Path) -> bool {
    dir.join("conf").exists() || swap::new_dir(dir).join(swap::COMPLETE).exists()
}

/// Opens the store in `dir` (migrating it), with a lock conflict told as [`RightsError::InUse`].
pub fn open(dir: &Path) -> Result<Store, RightsError> {
    Store::open(dir).map_err(|e| match e {
        StoreError::Locked { path } => RightsError::InUse { path },
        e => RightsError::Store(e),
    })
}

/// The store and its document trees.
pub struct Opened {
    /// The conversation store.
    pub store: Store,
    /// The document trees in it.
    pub docs: DocStore,
}

/// Opens the store and its document trees.
pub fn open_all(dir: &Path) -> Result<Opened, RightsError> {
    let store = open(dir)?;
    let docs = DocStore::open(&store.db())?;
    Ok(Opened { store, docs })
}

/// Whether `key` holds `conv`'s records: its anchor (exactly `conv`) or a record under the
/// `conv\0` prefix every other tree uses.
pub fn belongs(key: &[u8], conv: &str) -> bool {
    let c = conv.as_bytes();
    key == c || (key.len() > c.len() && key.starts_with(c) && key[c.len()] == 0)
}
