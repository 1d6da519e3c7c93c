//! Where the store is: sled in the data directory (the default), or PostgreSQL when
//! `database_url` is set. What only one backend can do is reached from here.

use std::path::PathBuf;

use secrecy::SecretString;

/// Where the store is.
#[derive(Debug, Clone)]
pub enum Location {
    /// sled in this directory.
    Sled(PathBuf),
    /// PostgreSQL at this URL (it may hold a password).
    Postgres(SecretString),
}
