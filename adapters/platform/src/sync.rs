//! The one lock-poisoning policy: a poisoned lock is recovered, never a panic.
//!
//! Every value a `std::sync` lock guards in anchorbot is a cache or a map whose invariants hold
//! between statements, so a panic while the lock was held (one conversation's turn going
//! wrong) leaves it usable; panicking on the poison would take every other conversation down
//! with it. Locks are taken through these functions; nothing is logged per lock.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, recovering the guard if a holder panicked.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks `l`, recovering the guard if a writer panicked.
pub fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `l`, recovering the guard if a writer panicked.
pub fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_gives_its_guard_back() {
        let m = Mutex::new(vec![1]);
        let poisoned = std::panic::catch_unwind(|| {
            let mut g = m.lock().unwrap();
            g.push(2);
            panic!("a holder panics");
        });
        assert!(poisoned.is_err());
        assert!(m.is_poisoned());
        let mut g = lock(&m);
        g.push(3);
        assert_eq!(*g, vec![1, 2, 3]);
    }

    #[test]
    fn a_poisoned_rwlock_gives_its_guards_back() {
        let l = RwLock::new(1);
        let poisoned = std::panic::catch_unwind(|| {
            let mut g = l.write().unwrap();
            *g = 2;
            panic!("a writer panics");
        });
        assert!(poisoned.is_err());
        assert!(l.is_poisoned());
        *write(&l) += 1;
        assert_eq!(*read(&l), 3);
    }
}
