//! Where the store is: sled in the data directory (the default), or PostgreSQL when
//! `database_url` is set. Opening it, and what replaces or rewrites a whole store (sled's
//! compaction and restore), are reached from here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;

use super::sled::{self as sled_backend, backup, swap, SledStore};
use super::{BackupSummary, Storage, StorageError};

/// Where the store is.
#[derive(Debug, Clone)]
pub enum Location {
    /// sled in this directory.
    Sled(PathBuf),
    /// PostgreSQL at this URL (it may hold a password).
    Postgres(SecretString),
}

impl Location {
    /// PostgreSQL when `database_url` is set, else sled in `data_dir`.
    pub fn new(data_dir: &Path, database_url: Option<&SecretString>) -> Self {
        match database_url {
            Some(url) => Location::Postgres(url.clone()),
            None => Location::Sled(data_dir.to_path_buf()),
        }
    }

    /// Opens the store (creating and migrating it as needed). Never deletes data.
    pub async fn open(&self) -> Result<Storage, StorageError> {
        match self {
            Location::Sled(dir) => Ok(Storage::of(Arc::new(SledStore::open(dir)?))),
            Location::Postgres(url) => {
                Ok(Storage::of(Arc::new(super::postgres::PgStore::connect(url).await?)).shared())
            }
        }
    }

    /// Whether a store was ever written here (a database always counts).
    pub fn exists(&self) -> bool {
        match self {
            Location::Sled(dir) => sled_backend::exists(dir),
            Location::Postgres(_) => true,
        }
    }

    /// Whether the store is a shared database rather than a directory of this process.
    pub fn is_database(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }

    /// What and where, for messages and `doctor`, without any password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sled(dir) => format!("sled in {}", dir.display()),
            Location::Postgres(url) => {
                format!("PostgreSQL at {}", super::postgres::redact(url))
            }
        }
    }

    /// Rewrites the store so erased records leave the disk, and returns the records kept.
    /// Needs every handle on the store closed. A database reclaims space itself: `None`.
    pub fn compact(&self) -> Result<Option<u64>, StorageError> {
        match self {
            Location::Sled(dir) => {
                let store = SledStore::open(dir)?;
                let copied = swap::write_new(dir, |new| Ok(swap::copy_trees(store.db(), new)?))?;
                drop(store);
                swap::swap_in(dir)?;
                Ok(Some(copied))
            }
            Location::Postgres(_) => Ok(None),
        }
    }

    /// Checks a backup file whole, without writing anything.
    pub fn verify_backup(&self, file: &Path) -> Result<BackupSummary, StorageError> {
        self.sled_only("restore")?;
        backup::verify(file)
    }

    /// Builds a store from the (verified) backup at `file` beside the current one; then
    /// [`Location::swap_restored`] puts it in place.
    pub fn restore_beside(&self, file: &Path) -> Result<BackupSummary, StorageError> {
        let dir = self.sled_only("restore")?;
        backup::restore_into_new(dir, file)
    }

    /// Replaces the store with the one [`Location::restore_beside`] built. Needs every handle
    /// on the store closed.
    pub fn swap_restored(&self) -> Result<(), StorageError> {
        swap::swap_in(self.sled_only("restore")?)
    }

    fn sled_only(&self, what: &'static str) -> Result<&Path, StorageError> {
        match self {
            Location::Sled(dir) => Ok(dir),
            Location::Postgres(_) => Err(StorageError::Unsupported {
                what,
                backend: "PostgreSQL",
                hint: PG_DUMP_HINT,
            }),
        }
    }
}

/// What to use instead of `backup` and `restore` on PostgreSQL.
pub const PG_DUMP_HINT: &str = "use pg_dump and pg_restore on the database (`pg_dump -Fc \"$ANCHORBOT_DATABASE_URL\" > anchorbot.dump`; see the README's \"Backups\" section)";
