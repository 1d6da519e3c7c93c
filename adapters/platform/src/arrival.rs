//! Events journaled as they arrive, before the adapter maps them.
//!
//! Mapping a platform event can take platform calls (is the bot in this thread? who wrote
//! it?), which may be slow or rate-limited, while the platform wants its acknowledgement at
//! once (Slack: 3 seconds). So an adapter that must acknowledge first claims an [`Arrival`]:
//! the event's identity and its raw body, journaled by the engine in one durable write, unique
//! across every process on the store (a redelivery, or the twin of an event that reached
//! another process, is refused). Then it acknowledges, maps, and tells the engine what the
//! arrival became ([`crate::EventSink::mapped`]). If the process dies in between, the process
//! that takes its events over hands the arrival back to its own adapter of that platform
//! ([`crate::EventSink::arrivals`]), which maps it again.

use serde::{Deserialize, Serialize};

use crate::{ConversationKey, EventSink, InboundEvent, SubmitError};

/// A platform event as it arrived, identified as its mapped event will be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrival {
    /// The conversation it belongs to, as far as the adapter can tell without asking the
    /// platform; the mapped event normally has the same.
    pub key: ConversationKey,
    /// Its event id, the one the mapped event carries (twins share it).
    pub event_id: String,
    /// What the platform sent, in the adapter's own encoding (the engine never reads it).
    pub body: String,
}

/// How many arrivals handed back at a takeover may wait for their adapter.
pub const REDELIVERY_QUEUE: usize = 4096;

/// Hands `event` to the engine: against `claim`, the arrival it was mapped from, when there is
/// one ([`EventSink::mapped`]), else journaled now ([`EventSink::accept`]).
pub async fn deliver(
    sink: &dyn EventSink,
    claim: Option<Arrival>,
    event: InboundEvent,
) -> Result<(), SubmitError> {
    match claim {
        Some(claim) => sink.mapped(&claim, Some(event)).await.map(|_| ()),
        None => sink.accept(event).await.map(|_| ()),
    }
}

/// Ends `claim`, whose work mapped to nothing: nothing is owed, and a redelivery is dropped.
pub async fn settle(sink: &dyn EventSink, claim: Option<Arrival>) {
    if let Some(claim) = claim {
        if let Err(e) = sink.mapped(&claim, None).await {
            tracing::debug!(error = %e, "a claim could not be ended");
        }
    }
}
