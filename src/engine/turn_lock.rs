//! One turn at a time per conversation. The conversation's worker (see [`crate::dispatch`])
//! and the deferred turn of a message whose files were read in the background both take the
//! conversation's turn lock, so two answers (or an answer and a `/clear`) of one conversation
//! never run together, while the files themselves are read without it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anchorbot_platform::ConversationKey;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// The turn locks of every conversation that has a turn running or waiting.
#[derive(Default)]
pub struct TurnLocks {
    /// A conversation's entry lives while someone holds or waits for its lock.
    locks: Mutex<HashMap<ConversationKey, Arc<AsyncMutex<()>>>>,
}

/// Holds (or, while [`TurnLocks::lock`] waits, waits for) a conversation's turn lock; the
/// conversation's entry goes when the last holder or waiter drops.
pub struct TurnGuard<'a> {
    locks: &'a TurnLocks,
    key: ConversationKey,
    lock: Arc<AsyncMutex<()>>,
    held: Option<OwnedMutexGuard<()>>,
}

impl TurnLocks {
    /// Waits for `key`'s turn lock (first come, first served). Dropping the future while it
    /// waits gives up its place.
    pub async fn lock(&self, key: &ConversationKey) -> TurnGuard<'_> {
        let lock = self
            .locks
            .lock()
            .expect("turn locks")
            .entry(key.clone())
            .or_default()
            .clone();
        // The guard exists while waiting, so a waiter that is dropped still cleans up.
        let mut turn = TurnGuard {
            locks: self,
            key: key.clone(),
            lock,
            held: None,
        };
        turn.held = Some(turn.lock.clone().lock_owned().await);
        turn
    }

    /// Conversations with a turn running or waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().expect("turn locks").len()
    }
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.locks.locks.lock().expect("turn locks");
        self.held = None;
        // The map and this guard hold the only references: nobody else holds or waits (they
        // clone from the map under this same lock, so none can appear meanwhile).
        if Arc::strong_count(&self.lock) == 2
            && locks
                .get(&self.key)
                .is_some_and(|l| Arc::ptr_eq(l, &self.lock))
        {
            locks.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn key(c: &str) -> ConversationKey {
        ConversationKey::new("test", Some("W"), c, None).unwrap()
    }

    #[test]
    fn turns_of_one_conversation_wait_for_each_other_and_others_do_not() {
        let locks = TurnLocks::default();
        let first = locks.lock(&key("a")).now_or_never().expect("free");
        assert!(locks.lock(&key("a")).now_or_never().is_none(), "taken");
        let other = locks.lock(&key("b")).now_or_never();
        assert!(other.is_some(), "another conversation goes on");
        drop(other);
        drop(first);
        assert!(locks.lock(&key("a")).now_or_never().is_some(), "released");
    }

    #[test]
    fn entries_go_when_the_last_holder_or_waiter_leaves() {
        let locks = TurnLocks::default();
        let a = key("a");
        let first = locks.lock(&a).now_or_never().unwrap();
        let mut waiter = Box::pin(locks.lock(&a));
        assert!((&mut waiter).now_or_never().is_none());
        drop(first);
        assert_eq!(locks.len(), 1, "the waiter keeps the entry");
        let second = (&mut waiter).now_or_never().expect("handed over");
        drop(waiter);
        drop(second);
        assert_eq!(locks.len(), 0);
        // A waiter given up (a cancelled deferred turn) leaves nothing behind either.
        let holder = locks.lock(&a).now_or_never().unwrap();
        let mut gave_up = Box::pin(locks.lock(&a));
        assert!((&mut gave_up).now_or_never().is_none());
        drop(gave_up);
        drop(holder);
        assert_eq!(locks.len(), 0);
    }
}
