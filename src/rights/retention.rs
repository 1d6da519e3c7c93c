//! Optional retention (`retention_days`): conversations idle for longer are forgotten, by
//! the same code as `anchorbot forget`, when `run` or `chat` starts and then hourly. Only the
//! number forgotten is logged, never a key or any content.
//!
//! The running bot cannot compact its own open sled store, so a sweep erases the records and
//! marks the store: the next open compacts it (the bot's next start, or any `anchorbot`
//! command once the bot has stopped), and then the bytes are gone from disk. PostgreSQL
//! reclaims the space of deleted rows itself.

use std::sync::Arc;
use std::time::Duration;

use anchorbot_platform::ConversationKey;

use super::{erase, list, RightsError};
use crate::docs::store::DocStore;
use crate::docs::Documents;
use crate::engine::Engine;
use crate::store::{now_ms, Store};

/// Time between sweeps while the bot runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// The lease under which one process at a time sweeps a shared store.
pub const SWEEP_LEASE: &str = "jobs:retention";

const DAY_MS: u64 = 24 * 3600 * 1000;

/// Forgets every conversation whose last activity is older than `days` days; returns how
/// many. A conversation with no recorded time at all is kept.
pub async fn sweep(store: &Store, docs: &DocStore, days: u32) -> Result<usize, RightsError> {
    let cutoff = now_ms().saturating_sub(u64::from(days) * DAY_MS);
    let mut forgotten = 0;
    let all = list::activity(store, docs).await?;
    for (conv, last_activity_ms) in all {
        if last_activity_ms == 0 || last_activity_ms >= cutoff {
            continue;
        }
        let Ok(key) = conv.parse::<ConversationKey>() else {
            tracing::warn!("retention skipped a record whose key is not a conversation key");
            continue;
        };
        erase::erase(store, docs, &key).await?;
        forgotten += 1;
    }
    // `erase` made each one durable; the space is reclaimed later (sled: at its next open).
    if forgotten > 0 {
        store.storage().maintenance.reclaim_later().await?;
    }
    Ok(forgotten)
}

/// Runs one sweep now (before any event is taken) and then one every [`SWEEP_EVERY`] in the
/// background; `None` when retention is off. Abort the handle at shutdown.
pub async fn start(
    engine: Arc<Engine>,
    docs: &Arc<Documents>,
    days: Option<u32>,
) -> Option<tokio::task::JoinHandle<()>> {
    let days = days?;
    let docs = docs.clone();
    run_once(&engine, docs.store(), days).await;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            run_once(&engine, docs.store(), days).await;
        }
    }))
}

async fn run_once(engine: &Engine, docs: &DocStore, days: u32) {
    // One process at a time sweeps a shared store: the one that holds the lease for the
    // hour. Another process's sweep this hour covers this one's.
    let leases = &engine.store().storage().leases;
    match leases
        .try_acquire(SWEEP_LEASE, engine.replica(), SWEEP_EVERY)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!("retention: another process sweeps this hour");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "retention lease unavailable; the sweep was skipped");
            return;
        }
    }
    match sweep(engine.store(), docs, days).await {
        Ok(0) => tracing::debug!(retention_days = days, "retention: no idle conversation"),
        Ok(n) => tracing::info!(
            forgotten = n,
            retention_days = days,
            "retention: idle conversations forgotten; the store is compacted at its next open"
        ),
        Err(e) => tracing::warn!(error = %e, "retention sweep failed; it runs again in an hour"),
    }
}
