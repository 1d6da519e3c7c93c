//! One turn at a time per conversation. The conversation's worker (see [`crate::dispatch`])
//! and the deferred turn of a message whose files were read in the background both take the
//! conversation's turn lock, so two answers (or an answer and a `/clear`) of one conversation
//! never run together, while the files themselves are read without it.
//!
//! On a store other processes share, the lock also holds the conversation's lease
//! (`conv:{key}`, see [`crate::replica::lease`]), renewed while the turn streams, so replicas
//! take one conversation's turns one at a time too. The lease passes from one turn to the next
//! of this process while more are waiting here, and is given up when none is; a process that
//! dies leaves it to expire ([`TURN_LEASE_TTL`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorbot_platform::sync;
use anchorbot_platform::ConversationKey;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::replica::lease::{self, Held};
use crate::storage::Leases;

/// How long a conversation's lease outlives its holder's last renewal (renewed every third of
/// it): a replica that dies mid-answer holds its conversations this long at most.
pub const TURN_LEASE_TTL: Duration = Duration::from_secs(10);

/// A lock's state: the conversation's lease while this process holds it.
type Slot = Arc<AsyncMutex<Option<Held>>>;

/// The store's leases and this process's name in them.
pub struct SharedTurns {
    /// The store's leases.
    pub leases: Arc<dyn Leases>,
    /// This process's replica id.
    pub holder: String,
}

/// The turn locks of every conversation that has a turn running or waiting.
#[derive(Default)]
pub struct TurnLocks {
    /// A conversation's entry lives while someone holds or waits for its lock.
    locks: Mutex<HashMap<ConversationKey, Slot>>,
    /// Set on a shared store: turns take the conversation's lease as well.
    shared: Option<SharedTurns>,
}

/// Holds (or, while [`TurnLocks::lock`] waits, waits for) a conversation's turn lock; the
/// conversation's entry goes when the last holder or waiter drops.
pub struct TurnGuard<'a> {
    locks: &'a TurnLocks,
    key: ConversationKey,
    lock: Slot,
    held: Option<OwnedMutexGuard<Option<Held>>>,
}

/// The name of a conversation's lease.
pub fn conversation_lease(key: &ConversationKey) -> String {
    format!("conv:{key}")
}

impl TurnLocks {
    /// Locks for a store other processes share (`Some`) or for this process alone.
    pub fn new(shared: Option<SharedTurns>) -> Self {
        Self {
            locks: Mutex::default(),
            shared,
        }
    }

    /// Waits for `key`'s turn lock (first come, first served), and on a shared store for its
    /// lease. Dropping the future while it waits gives up its place.
    pub async fn lock(&self, key: &ConversationKey) -> TurnGuard<'_> {
        let lock = sync::lock(&self.locks)
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
        let mut slot = turn.lock.clone().lock_owned().await;
        if let Some(shared) = &self.shared {
            if slot.as_ref().is_none_or(|held| held.lost()) {
                let name = conversation_lease(key);
                *slot = Some(
                    lease::acquire(&shared.leases, &name, &shared.holder, TURN_LEASE_TTL).await,
                );
            }
        }
        turn.held = Some(slot);
        turn
    }

    /// Conversations with a turn running or waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        sync::lock(&self.locks).len()
    }
}

impl Drop for TurnGuard<'_> {
    fn drop(&mut self) {
        let mut locks = sync::lock(&self.locks.locks);
        // The map, this guard and its mutex guard (which keeps a clone) hold the only
        // references: nobody else holds or waits (they clone from the map under this same
        // lock, so none can appear meanwhile).
        let alone = Arc::strong_count(&self.lock) == 2 + usize::from(self.held.is_some());
        if let Some(mut slot) = self.held.take() {
            if alone {
                // Nobody here waits for the conversation: its lease goes back to the store.
                slot.take();
            }
        }
        if alone
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

    #[tokio::test]
    async fn on_a_shared_store_turns_of_two_processes_take_the_conversation_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let leases = crate::storage::Location::Sled(dir.path().to_path_buf())
            .open()
            .await
            .unwrap()
            .leases;
        let of = |holder: &str| {
            TurnLocks::new(Some(SharedTurns {
                leases: leases.clone(),
                holder: holder.into(),
            }))
        };
        let (one, two) = (of("r1"), of("r2"));
        let a = key("a");
        let first = one.lock(&a).await;
        let name = conversation_lease(&a);
        assert_eq!(leases.holder(&name).await.unwrap().as_deref(), Some("r1"));
        // The other process waits for the conversation, not for another one.
        let mut waiting = Box::pin(two.lock(&a));
        let waited = tokio::time::timeout(Duration::from_millis(500), &mut waiting).await;
        assert!(waited.is_err(), "r2 must wait while r1 answers");
        let other = tokio::time::timeout(Duration::from_secs(2), two.lock(&key("b"))).await;
        assert!(other.is_ok(), "another conversation goes on");
        drop(other);
        // A second turn waiting in r1 keeps the lease within r1.
        let mut next_here = Box::pin(one.lock(&a));
        assert!((&mut next_here).now_or_never().is_none());
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(2), &mut next_here)
            .await
            .expect("handed over within the process");
        assert_eq!(leases.holder(&name).await.unwrap().as_deref(), Some("r1"));
        drop(next_here);
        drop(second);
        let got = tokio::time::timeout(Duration::from_secs(3), &mut waiting)
            .await
            .expect("r2 takes the conversation once r1 has no turn for it");
        assert_eq!(leases.holder(&name).await.unwrap().as_deref(), Some("r2"));
        drop(got);
    }
}
