//! Replicas: several processes on one shared store behave as one bot. What they share is
//! rows in the database, never memory:
//! - each process has a replica id and a liveness lease ([`liveness_lease`]) it renews while
//!   it runs, so the others can tell when it died and take over what it had accepted;
//! - what one process at a time may do (answer one conversation, run the hourly jobs, hold
//!   the Discord gateway) is a lease with an expiry, held through a [`lease::Held`] that
//!   renews it in the background and gives it up when dropped.
//!
//! On a store only one process can open (sled) the same code runs with leases that are
//! always free, so a single process behaves as before.

pub mod budget;
pub mod journal;
pub mod lease;

use std::time::Duration;

/// How often a process renews its liveness lease.
pub const LIVENESS_RENEW: Duration = Duration::from_secs(5);

/// How long a liveness lease lasts unrenewed: a process that stops renewing (killed, frozen)
/// is gone this long after its last renewal, and its accepted events are taken over (so
/// within this plus [`LIVENESS_RENEW`] of its death).
pub const LIVENESS_TTL: Duration = Duration::from_secs(15);

/// The lease a process renews while it runs: its events are its own while it holds it.
pub fn liveness_lease(replica: &str) -> String {
    format!("replica:{replica}")
}

/// The lease behind a role an adapter takes through [`anchorbot_platform::EventSink::lead`]
/// (the Discord gateway: `role:discord:gateway:{application}:{shard}`).
pub fn role_lease(role: &str) -> String {
    format!("role:{role}")
}
