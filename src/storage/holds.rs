//! Rate-limit holds shared by every process on a store: a platform's 429 with `Retry-After`
//! received by one replica is recorded here, so every replica stops calling that method until
//! it has passed (see [`crate::replica::budget`]).
//!
//! A hold is a key (the budget's key, as text) and an expiry on the store's clock (the
//! database's, on PostgreSQL, so replicas' clocks need not agree). Holds are not conversation
//! data: the listings, `/clear`, `forget` and backups never see them.

use std::time::Duration;

use async_trait::async_trait;

use super::StorageError;

/// A hold still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateHold {
    /// What is held (the budget's key, as text).
    pub key: String,
    /// How long it still holds, as the store's clock measures it.
    pub left: Duration,
}

/// Rate-limit holds shared by the processes on a store.
#[async_trait]
pub trait RateHolds: Send + Sync {
    /// Holds `key` for `retry_after` from now (the store's clock). A longer hold already
    /// recorded for `key` stays as it is.
    async fn hold(&self, key: &str, retry_after: Duration) -> Result<(), StorageError>;

    /// Every hold that has not expired, with the time it has left.
    async fn active(&self) -> Result<Vec<RateHold>, StorageError>;
}
