//! Holding a lease: [`acquire`] waits until a named lease is this process's, and the
//! [`Held`] it returns renews it in the background (every third of its time to live) until
//! it is dropped, then gives it up so the next holder need not wait for it to expire. A
//! holder that dies leaves the lease to expire.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::storage::{Leases, StorageError};

/// How often a waiter asks again for a lease someone else holds.
pub const POLL: Duration = Duration::from_millis(200);

/// A lease this process holds, renewed until dropped.
pub struct Held {
    leases: Arc<dyn Leases>,
    name: String,
    holder: String,
    /// Set when a renewal found the lease taken by another holder (it had expired, e.g. while
    /// this process was frozen): whoever holds the guard should stop what the lease guards.
    lost: Arc<AtomicBool>,
    renewal: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("name", &self.name)
            .field("holder", &self.holder)
            .finish()
    }
}

impl Held {
    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a renewal found the lease in another holder's hands.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewal.abort();
        if self.lost() {
            return;
        }
        let (leases, name, holder) = (
            self.leases.clone(),
            std::mem::take(&mut self.name),
            std::mem::take(&mut self.holder),
        );
        // Without a runtime (a test's end) the lease just expires.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = leases.release(&name, &holder).await {
                    tracing::debug!(lease = %name, error = %e, "lease not released; it expires");
                }
            });
        }
    }
}

/// Takes `name` for `holder` for `ttl` if it is free (or already `holder`'s), renewing it
/// from then on; `None` when someone else holds it.
pub async fn try_hold(
    leases: &Arc<dyn Leases>,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<Held>, StorageError> {
    if !leases.try_acquire(name, holder, ttl).await? {
        return Ok(None);
    }
    let lost = Arc::new(AtomicBool::new(false));
    let renewal = tokio::spawn(renew(
        leases.clone(),
        name.to_string(),
        holder.to_string(),
        ttl,
        lost.clone(),
    ));
    Ok(Some(Held {
        leases: leases.clone(),
        name: name.to_string(),
        holder: holder.to_string(),
        lost,
        renewal,
    }))
}

/// Waits until `name` is `holder`'s (asking every [`POLL`]), then holds it as [`try_hold`]
/// does. A store that cannot be asked is waited out too (logged once), since answering out
/// of order is worse than answering late; dropping the future gives up.
pub async fn acquire(leases: &Arc<dyn Leases>, name: &str, holder: &str, ttl: Duration) -> Held {
    let mut warned = false;
    loop {
        match try_hold(leases, name, holder, ttl).await {
            Ok(Some(held)) => return held,
            Ok(None) => {}
            Err(e) => {
                if !warned {
                    tracing::warn!(lease = name, error = %e, "cannot take a lease; waiting for the store");
                    warned = true;
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn renew(
    leases: Arc<dyn Leases>,
    name: String,
    holder: String,
    ttl: Duration,
    lost: Arc<AtomicBool>,
) {
    let every = (ttl / 3).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(every).await;
        match leases.try_acquire(&name, &holder, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(lease = %name, "a lease this process held was taken by another");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // The store is away for a moment: the lease holds until its expiry, and the next
            // renewal tries again.
            Err(e) => tracing::warn!(lease = %name, error = %e, "lease not renewed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Location;

    async fn leases(dir: &std::path::Path) -> Arc<dyn Leases> {
        Location::Sled(dir.to_path_buf())
            .open()
            .await
            .unwrap()
            .leases
    }

    #[tokio::test]
    async fn a_held_lease_is_renewed_and_given_up_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let leases = leases(dir.path()).await;
        let ttl = Duration::from_millis(300);
        let held = try_hold(&leases, "conv:a", "r1", ttl)
            .await
            .unwrap()
            .unwrap();
        assert!(try_hold(&leases, "conv:a", "r2", ttl)
            .await
            .unwrap()
            .is_none());
        // Well past its time to live, the renewals keep it.
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(
            leases.holder("conv:a").await.unwrap().as_deref(),
            Some("r1")
        );
        assert!(!held.lost());
        drop(held);
        let waiter = acquire(&leases, "conv:a", "r2", ttl);
        let got = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("released at drop, taken by the waiter");
        assert_eq!(got.name(), "conv:a");
        assert_eq!(
            leases.holder("conv:a").await.unwrap().as_deref(),
            Some("r2")
        );
    }
}
