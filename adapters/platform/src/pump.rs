//! The inbound pump the chat adapters share. A platform wants its events acknowledged at once
//! (Slack: 3 seconds), while mapping one can take platform calls, so the platform's handlers
//! only drop repeats and queue what arrived ([`Inbox`]), and one worker ([`run`]) maps the
//! queue in arrival order with the adapter's [`Mapper`], together with the arrivals another
//! process claimed and died before mapping ([`crate::EventSink::arrivals`]). At shutdown it
//! takes nothing new, and maps what was already queued.
//!
//! [`claim`] and [`submit`] are the two calls a mapper makes to the engine around that, with
//! the outcomes an adapter only logs.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::arrival::{self, Arrival};
use crate::sync;
use crate::{EventSink, InboundEvent, RecentIds, Shutdown, SubmitError};

/// An adapter's mapping worker: turns what its platform sent into events for the engine.
#[async_trait]
pub trait Mapper: Send {
    /// What the platform's handlers queue.
    type Work: Send;

    /// Maps one piece of queued work, and submits what it maps to.
    async fn map(&mut self, work: Self::Work);

    /// Maps an arrival this process took over from one that died before mapping it; its
    /// claim is this process's, and ends once mapped ([`arrival::settle`] when it maps to
    /// nothing).
    async fn take_over(&mut self, arrival: Arrival);
}

/// Why work was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue is full: the mapper is that far behind.
    #[error("the inbound queue is full")]
    Full,
    /// The mapper is gone (the adapter stopped).
    #[error("the inbound queue is closed")]
    Closed,
}

/// The handlers' side: drops repeats and queues work for the mapper, never waiting. Cheap to
/// clone.
#[derive(Debug)]
pub struct Inbox<W> {
    tx: mpsc::Sender<W>,
    /// Event ids seen lately (delivery-level de-duplication).
    recent: Arc<Mutex<RecentIds>>,
}

impl<W> Clone for Inbox<W> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            recent: Arc::clone(&self.recent),
        }
    }
}

/// An inbox holding at most `queue` pieces of work (so a flood cannot exhaust memory) and
/// remembering the last `recent` event ids, and the receiver [`run`] maps from.
pub fn inbox<W>(queue: usize, recent: usize) -> (Inbox<W>, mpsc::Receiver<W>) {
    let (tx, rx) = mpsc::channel(queue.max(1));
    (
        Inbox {
            tx,
            recent: Arc::new(Mutex::new(RecentIds::new(recent))),
        },
        rx,
    )
}

impl<W> Inbox<W> {
    /// Whether event `id` is new; records it. A repeat is a redelivery (a retry, a second
    /// socket, a replay after a resume).
    pub fn fresh(&self, id: &str) -> bool {
        sync::lock(&self.recent).insert(id)
    }

    /// Queues `work` for the mapper; never waits.
    pub fn queue(&self, work: W) -> Result<(), QueueError> {
        self.tx.try_send(work).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => QueueError::Full,
            mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
        })
    }
}

/// Maps queued work with `mapper` until the inbox closes, or until shutdown: then nothing new
/// is queued, and what was already queued (acknowledged to the platform) is still mapped.
/// Arrivals from `taken_over` (see [`crate::EventSink::arrivals`]) are mapped as they come.
pub async fn run<M: Mapper + ?Sized>(
    mapper: &mut M,
    mut rx: mpsc::Receiver<M::Work>,
    mut taken_over: Option<mpsc::Receiver<Arrival>>,
    mut shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            work = rx.recv() => match work {
                Some(work) => mapper.map(work).await,
                None => return,
            },
            Some(arrival) = next(&mut taken_over) => mapper.take_over(arrival).await,
            _ = shutdown.wait() => break,
        }
    }
    rx.close();
    while let Some(work) = rx.recv().await {
        mapper.map(work).await;
    }
}

/// The next arrival handed back, or never when there is no such channel.
async fn next(rx: &mut Option<mpsc::Receiver<Arrival>>) -> Option<Arrival> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Claims `arrival` ([`EventSink::claim`]): `true` when it is this process's to map and
/// answer; `false` when it was claimed before (a redelivery, or its twin reached this or
/// another process) or could not be journaled.
pub async fn claim(sink: &dyn EventSink, arrival: &Arrival) -> bool {
    match sink.claim(arrival).await {
        Ok(()) => true,
        Err(SubmitError::Duplicate) => {
            tracing::debug!(event = %arrival.event_id, "event claimed before; dropped");
            false
        }
        Err(e) => {
            tracing::info!(error = %e, "event not taken");
            false
        }
    }
}

/// Hands `event` to the engine against `claim`, the arrival it was mapped from, or journaled
/// now ([`arrival::deliver`]). The platform acknowledged the event already, so a refusal is
/// only logged: a full conversation queue is told to the user by the engine, and a duplicate
/// is answered once, elsewhere or already.
pub async fn submit(sink: &dyn EventSink, claim: Option<Arrival>, event: InboundEvent) {
    match arrival::deliver(sink, claim, event).await {
        Ok(()) => {}
        Err(SubmitError::QueueFull { capacity }) => {
            tracing::warn!(capacity, "conversation queue full; the user was told")
        }
        Err(SubmitError::Duplicate) => tracing::debug!("event accepted before; dropped"),
        Err(e) => tracing::warn!(error = %e, "event not submitted"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConversationKey, Receipt};

    /// Records what it maps, in order.
    #[derive(Default)]
    struct Recorder {
        mapped: Vec<String>,
    }

    #[async_trait]
    impl Mapper for Recorder {
        type Work = u32;

        async fn map(&mut self, work: u32) {
            self.mapped.push(work.to_string());
        }

        async fn take_over(&mut self, arrival: Arrival) {
            self.mapped.push(format!("taken:{}", arrival.event_id));
        }
    }

    fn arrival(id: &str) -> Arrival {
        Arrival {
            key: ConversationKey::new("test", None, "c", None).unwrap(),
            event_id: id.into(),
            body: String::new(),
        }
    }

    #[tokio::test]
    async fn work_is_mapped_in_order_until_the_inbox_closes() {
        let (inbox, rx) = inbox(8, 8);
        for i in 0..3 {
            inbox.queue(i).unwrap();
        }
        drop(inbox);
        let (_stop, shutdown) = Shutdown::new();
        let mut m = Recorder::default();
        run(&mut m, rx, None, shutdown).await;
        assert_eq!(m.mapped, ["0", "1", "2"]);
    }

    #[tokio::test]
    async fn at_shutdown_what_was_queued_is_still_mapped() {
        let (inbox, rx) = inbox(8, 8);
        inbox.queue(1).unwrap();
        inbox.queue(2).unwrap();
        let (stop, shutdown) = Shutdown::new();
        stop.send(true).unwrap();
        let mut m = Recorder::default();
        // The inbox stays open: only the shutdown ends the run.
        run(&mut m, rx, None, shutdown).await;
        assert_eq!(m.mapped, ["1", "2"]);
        assert_eq!(
            inbox.queue(3),
            Err(QueueError::Closed),
            "nothing new is taken"
        );
    }

    #[tokio::test]
    async fn arrivals_taken_over_are_mapped_too() {
        let (inbox, rx) = inbox::<u32>(8, 8);
        let (tx, taken) = mpsc::channel(4);
        tx.send(arrival("e1")).await.unwrap();
        drop(tx);
        let (stop, shutdown) = Shutdown::new();
        let worker = tokio::spawn(async move {
            let mut m = Recorder::default();
            run(&mut m, rx, Some(taken), shutdown).await;
            m.mapped
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        inbox.queue(7).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        stop.send(true).unwrap();
        assert_eq!(worker.await.unwrap(), ["taken:e1", "7"]);
    }

    #[test]
    fn the_inbox_drops_repeats_and_refuses_past_its_bound() {
        let (inbox, _rx) = inbox(1, 8);
        assert!(inbox.fresh("a"));
        assert!(!inbox.clone().fresh("a"), "clones share what was seen");
        assert!(inbox.fresh("b"));
        inbox.queue(1).unwrap();
        assert_eq!(inbox.queue(2), Err(QueueError::Full));
    }

    /// A sink whose claims answer `claimed`.
    struct Claims(Result<(), SubmitError>);

    #[async_trait]
    impl EventSink for Claims {
        fn submit(&self, _event: InboundEvent) -> Result<Receipt, SubmitError> {
            Ok(Receipt::new().1)
        }

        async fn claim(&self, _arrival: &Arrival) -> Result<(), SubmitError> {
            match &self.0 {
                Ok(()) => Ok(()),
                Err(SubmitError::Duplicate) => Err(SubmitError::Duplicate),
                Err(_) => Err(SubmitError::ShuttingDown),
            }
        }
    }

    #[tokio::test]
    async fn only_a_claim_taken_here_is_mapped() {
        assert!(claim(&Claims(Ok(())), &arrival("e")).await);
        assert!(!claim(&Claims(Err(SubmitError::Duplicate)), &arrival("e")).await);
        assert!(!claim(&Claims(Err(SubmitError::ShuttingDown)), &arrival("e")).await);
    }
}
