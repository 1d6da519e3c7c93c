//! Rate-limit holds on sled: in this process's memory.
//!
//! Only one process opens a sled store, so there is no other replica to tell: a hold only has
//! to be seen by this process, for as long as it runs. A tree would outlive a restart, but the
//! budget of a process on sled keeps its holds itself (`LocalBudget`), and a tree that holds
//! no conversation's data would be one more the listings, `forget`, backups and compaction
//! must learn to leave out; a map needs none of that.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::SledStore;
use crate::storage::{RateHold, RateHolds, StorageError};
use anchorbot_platform::sync;

/// Held keys, until the instant given.
#[derive(Debug, Default)]
pub struct MemoryHolds {
    until: Mutex<HashMap<String, Instant>>,
}

impl MemoryHolds {
    /// Holds `key` for `retry_after`, keeping a longer hold already there.
    pub fn hold(&self, key: &str, retry_after: Duration) {
        let now = Instant::now();
        let until = now + retry_after;
        let mut held = sync::lock(&self.until);
        held.retain(|_, u| *u > now);
        let entry = held.entry(key.to_string()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// The holds still running, with the time they have left.
    pub fn active(&self) -> Vec<RateHold> {
        let now = Instant::now();
        let held = sync::lock(&self.until);
        held.iter()
            .filter(|(_, u)| **u > now)
            .map(|(key, u)| RateHold {
                key: key.clone(),
                left: u.duration_since(now),
            })
            .collect()
    }
}

#[async_trait]
impl RateHolds for SledStore {
    async fn hold(&self, key: &str, retry_after: Duration) -> Result<(), StorageError> {
        self.holds.hold(key, retry_after);
        Ok(())
    }

    async fn active(&self) -> Result<Vec<RateHold>, StorageError> {
        Ok(self.holds.active())
    }
}
