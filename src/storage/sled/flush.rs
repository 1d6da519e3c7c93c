//! Group commit for sled: one flush at a time covers every write made before it started.
//!
//! Concurrent sled 0.34 flushes can deadlock waiting on each other's stability intervals (seen
//! with 20 conversations committing at once), so only one runs at a time; but no caller holds
//! a lock while it runs. A caller takes a ticket, and waits until a flush that started after
//! its ticket has finished, starting one itself when none is running. Twenty conversations
//! committing at once share a flush or two.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::watch;

use crate::storage::StorageError;

/// The group-commit state of one database.
pub struct Flusher {
    /// Tickets handed out.
    requested: AtomicU64,
    /// A flush is running.
    running: AtomicBool,
    /// The highest ticket the last finished flush covers, and its error, if any.
    done: watch::Sender<(u64, Option<String>)>,
}

impl Default for Flusher {
    fn default() -> Self {
        Self {
            requested: AtomicU64::new(0),
            running: AtomicBool::new(false),
            done: watch::Sender::new((0, None)),
        }
    }
}

/// Ends a running flush even if its future is dropped, so waiters are never stranded.
struct FlushRun<'a>(&'a Flusher);

impl Drop for FlushRun<'_> {
    fn drop(&mut self) {
        // Cleared before waiters are woken: a woken waiter whose ticket is not covered must
        // be able to start the next flush.
        self.0.running.store(false, Ordering::SeqCst);
        self.0.done.send_modify(|_| {});
    }
}

impl Flusher {
    /// Returns once every write made to `db` before this call is on disk.
    pub async fn flush(&self, db: &sled::Db) -> Result<(), StorageError> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.done.subscribe();
        loop {
            {
                let (covered, error) = &*done.borrow_and_update();
                if *covered >= ticket {
                    return match error {
                        None => Ok(()),
                        Some(e) => Err(StorageError::Backend(format!("flush failed: {e}"))),
                    };
                }
            }
            if !self.running.swap(true, Ordering::SeqCst) {
                let run = FlushRun(self);
                // Every ticket handed out so far belongs to a write made before this point.
                let covers = self.requested.load(Ordering::SeqCst);
                let db = db.clone();
                let error = match tokio::task::spawn_blocking(move || db.flush()).await {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(format!("flush task failed: {e}")),
                };
                self.done.send_modify(|d| *d = (covers, error));
                drop(run);
                continue;
            }
            // A flush is running; it may have started before our ticket, so look again when
            // it ends.
            if done.changed().await.is_err() {
                return Err(StorageError::Backend(
                    "the store was closed while flushing".into(),
                ));
            }
        }
    }

    /// The highest ticket covered so far, and the last flush's error.
    pub fn covered(&self) -> (u64, Option<String>) {
        self.done.borrow().clone()
    }
}
