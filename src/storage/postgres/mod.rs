//! PostgreSQL backend (placeholder until the backend lands).

use secrecy::SecretString;

use super::StorageError;

/// Not yet.
pub struct PgStore;

impl PgStore {
    /// Not yet.
    pub async fn connect(_url: &SecretString) -> Result<super::sled::SledStore, StorageError> {
        Err(StorageError::Backend(
            "PostgreSQL is not built in yet".into(),
        ))
    }
}

/// The URL without its password.
pub fn redact(url: &str) -> String {
    url.to_string()
}
