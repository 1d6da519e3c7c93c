//! Per-conversation queues: events of one conversation are taken one at a time in arrival
//! order, different conversations run concurrently. Each queue is bounded; a full queue is
//! refused with a message to the user rather than blocking the adapter. Commands that only
//! read (`/status`, `/files`, `/help`) skip the queue, so they answer at once even while a
//! turn is running; `/clear` and feedback wait their turn.
//!
//! The ordering rule: a conversation's turns (answers, `/clear`, feedback, regeneration) never
//! run concurrently, and each starts in arrival order — except the files a message shares,
//! which the worker hands to the engine's background lane for that conversation
//! ([`crate::engine::ingests`]) before taking the next event, so questions sent while a big
//! file is read are answered meanwhile from what is stored. The lane reads the conversation's
//! files one message at a time, in order; the message's own text is answered after its own
//! files are in, under the same per-conversation turn lock the worker's turns take (so it may
//! come after questions sent later). The event's receipt resolves when its files are in and
//! its text is answered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anchorbot_platform::sync;
use anchorbot_platform::{
    Arrival, ConversationKey, EventSink, InboundEvent, Platform, Receipt, SubmitError,
};
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::commands::Command;
use crate::engine::{Accepted, Engine, Outcome};
use crate::replica::journal::Entry;
use crate::storage::Claim;

/// A queued event and the sender that completes its receipt.
type Job = (InboundEvent, oneshot::Sender<()>);

/// How long an idle conversation keeps its worker task.
const IDLE: Duration = Duration::from_secs(300);

/// Routes events to per-conversation workers. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    /// The engine every worker drives.
    engine: Arc<Engine>,
    /// Outbound side of each platform, by platform name (the key's first part).
    platforms: HashMap<String, Arc<dyn Platform>>,
    /// Live conversation queues. Senders are only used while this lock is held, which lets
    /// an idle worker retire without racing a new submission.
    queues: Mutex<HashMap<ConversationKey, mpsc::Sender<Job>>>,
    /// Per-conversation queue size.
    capacity: usize,
    /// Worker tasks, so shutdown can wait for them.
    tracker: TaskTracker,
    /// Set once shutdown starts.
    closed: AtomicBool,
    /// Events waiting in all queues (not yet taken up by their worker), for the metric.
    queued: AtomicI64,
    /// The store is a database other processes share: roles are leases there.
    shared_store: bool,
    /// Per platform: where arrivals taken over from a dead process go, and the receiving end
    /// until its adapter takes it ([`EventSink::arrivals`]).
    arrivals: HashMap<String, Redelivery>,
}

/// The channel that hands a platform's taken-over arrivals to its adapter.
struct Redelivery {
    tx: mpsc::Sender<Arrival>,
    rx: Mutex<Option<mpsc::Receiver<Arrival>>>,
}

impl Inner {
    /// Adds `delta` to the queued count and publishes it.
    fn queued(&self, delta: i64) {
        let now = self.queued.fetch_add(delta, Ordering::SeqCst) + delta;
        metrics::gauge!(crate::ops::metrics::QUEUE_DEPTH).set(now.max(0) as f64);
    }
}

impl Dispatcher {
    /// A dispatcher over `engine` replying through `platforms`. `shared_store`: the store is
    /// a database other processes share, so [`EventSink::lead`] takes roles as leases there
    /// (otherwise every role is this process's).
    pub fn new(
        engine: Arc<Engine>,
        platforms: HashMap<String, Arc<dyn Platform>>,
        capacity: usize,
        shared_store: bool,
    ) -> Self {
        let arrivals = platforms
            .keys()
            .map(|name| {
                let (tx, rx) = mpsc::channel(anchorbot_platform::REDELIVERY_QUEUE);
                let rx = Mutex::new(Some(rx));
                (name.clone(), Redelivery { tx, rx })
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                engine,
                platforms,
                arrivals,
                queues: Mutex::new(HashMap::new()),
                capacity,
                tracker: TaskTracker::new(),
                closed: AtomicBool::new(false),
                queued: AtomicI64::new(0),
                shared_store,
            }),
        }
    }

    /// Stops accepting events and waits until every queued event is handled.
    pub async fn drain(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        sync::lock(&self.inner.queues).clear();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    fn spawn_worker(&self, key: ConversationKey, platform: Arc<dyn Platform>) -> mpsc::Sender<Job> {
        let (tx, rx) = mpsc::channel::<Job>(self.inner.capacity);
        let inner = self.inner.clone();
        self.inner.tracker.spawn(worker(inner, key, platform, rx));
        tx
    }
}

async fn worker(
    inner: Arc<Inner>,
    key: ConversationKey,
    platform: Arc<dyn Platform>,
    mut rx: mpsc::Receiver<Job>,
) {
    loop {
        let job = match tokio::time::timeout(IDLE, rx.recv()).await {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(_) => {
                let mut queues = sync::lock(&inner.queues);
                if rx.is_empty() {
                    queues.remove(&key);
                    return;
                }
                continue;
            }
        };
        inner.queued(-1);
        let (event, done) = job;
        let reply_to = event.reply_to().clone();
        let author = event.author().clone();
        let handled = std::panic::AssertUnwindSafe(inner.engine.accept(event, platform.clone()))
            .catch_unwind()
            .await;
        match handled {
            Ok(Accepted::Background(pending)) => {
                // The files are read on the engine's lane; this worker goes on with the next
                // event, and the receipt waits for the files (tracked, so a drain waits too).
                let key = key.clone();
                inner.tracker.spawn(async move {
                    if let Outcome::Failed(reason) = pending.outcome().await {
                        tracing::debug!(conversation = %key, %reason, "turn failed");
                    }
                    let _ = done.send(());
                });
                continue;
            }
            Ok(Accepted::Done(Outcome::Failed(reason))) => {
                tracing::debug!(conversation = %key, %reason, "turn failed")
            }
            Ok(Accepted::Done(_)) => {}
            Err(_) => {
                tracing::error!(conversation = %key, "a turn panicked; the conversation goes on");
                let _ = platform
                    .ephemeral(&reply_to, &author, "⚠️ Something went wrong on my side while answering; nothing was saved. Please try again.")
                    .await;
            }
        }
        let _ = done.send(());
    }
}

/// A command that changes nothing, so it need not wait behind the conversation's turn.
fn reads_only(event: &InboundEvent) -> bool {
    let cmd = match event {
        // A Stop must reach the turn it stops, which holds the conversation's queue.
        InboundEvent::Stop(_) => return true,
        InboundEvent::Command(c) => Command::from_name(&c.name, &c.args),
        InboundEvent::Message(m) if m.attachments.is_empty() => match Command::parse(&m.text) {
            Some(c) => c,
            None => return false,
        },
        _ => return false,
    };
    matches!(
        cmd,
        Command::Status
            | Command::Files
            | Command::Help
            | Command::Unknown(_)
            | Command::TakesNoArguments(_)
    )
}

impl Dispatcher {
    /// Ends the journal entry of an event [`EventSink::submit`] refused with `e` (a full queue
    /// told its user; shutdown refuses it), so nothing stays owed. An event whose platform has
    /// no adapter here stays journaled, as in [`Dispatcher::replay`], for a process that runs
    /// one.
    async fn refused(&self, key: &ConversationKey, event_id: &str, e: &SubmitError) {
        if matches!(e, SubmitError::NoAdapter { .. }) {
            return;
        }
        let _ = self.inner.engine.store().mark_handled(key, event_id).await;
    }

    /// Takes over and queues every accepted, unanswered event whose process is gone (a
    /// crash, a kill, an answer cut at shutdown), oldest first; returns how many. `all`: every
    /// other process is gone (a store only one process can open); otherwise a process is gone
    /// when its liveness lease ([`crate::replica::liveness_lease`]) expired. An event whose platform has no
    /// adapter here stays journaled.
    pub async fn replay(&self, all: bool) -> usize {
        let engine = &self.inner.engine;
        let me = engine.replica().to_string();
        let pending = match self.inner.engine.store().storage().journal.pending().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "the journal of accepted events is unreadable; nothing replayed");
                return 0;
            }
        };
        let mut replayed = 0;
        let mut alive: HashMap<String, bool> = HashMap::new();
        for entry in pending {
            let decoded = match Entry::decode(&entry.payload) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "a journaled event is unreadable; marked handled");
                    if let Ok(key) = entry.conv.parse::<ConversationKey>() {
                        let _ = self
                            .inner
                            .engine
                            .store()
                            .mark_handled(&key, &entry.event)
                            .await;
                    }
                    continue;
                }
            };
            let Some(platform) = self.inner.platforms.get(decoded.platform()).cloned() else {
                continue;
            };
            if entry.owner == me {
                continue;
            }
            if !all {
                // Asked once per owner in a pass: many pending events often share one.
                let gone = match alive.get(&entry.owner) {
                    Some(alive) => !alive,
                    None => {
                        let lease = crate::replica::liveness_lease(&entry.owner);
                        match engine.store().storage().leases.holder(&lease).await {
                            Ok(holder) => {
                                alive.insert(entry.owner.clone(), holder.is_some());
                                holder.is_none()
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot tell whether a process is alive; its events wait");
                                false
                            }
                        }
                    }
                };
                if !gone {
                    continue;
                }
            }
            let journal = &engine.store().storage().journal;
            match journal
                .adopt(&entry.conv, &entry.event, &entry.owner, &me)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "an accepted event could not be taken over");
                    continue;
                }
            }
            let cleared = crate::replica::journal::clear_partial(&platform, &entry.reply).await;
            if cleared > 0 {
                tracing::info!(
                    conversation = %entry.conv,
                    messages = cleared,
                    "the cut-off answer of a process that died was taken away"
                );
            }
            match decoded {
                Entry::Event(event) => match self.submit(event) {
                    Ok(_) => replayed += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, "an accepted event could not be queued again")
                    }
                },
                Entry::Arrival { arrival } => {
                    let Some(redelivery) = self.inner.arrivals.get(arrival.key.platform()) else {
                        continue;
                    };
                    match redelivery.tx.try_send(arrival) {
                        Ok(()) => replayed += 1,
                        Err(e) => tracing::warn!(
                            error = %e,
                            "an accepted event could not be handed to its adapter again; it is answered at the next start"
                        ),
                    }
                }
            }
        }
        if replayed > 0 {
            tracing::info!(
                events = replayed,
                "answering events accepted before a restart"
            );
        }
        replayed
    }
}

#[async_trait::async_trait]
impl EventSink for Dispatcher {
    async fn lead(&self, role: &str, ttl: Duration) -> bool {
        if !self.inner.shared_store {
            return true;
        }
        let engine = &self.inner.engine;
        let leases = &engine.store().storage().leases;
        let lease = crate::replica::role_lease(role);
        match leases.try_acquire(&lease, engine.replica(), ttl).await {
            Ok(held) => held,
            // Not known to be this process's: the adapter keeps what it holds until the
            // lease's last known expiry, and takes nothing new.
            Err(e) => {
                tracing::warn!(role, error = %e, "a role could not be taken or renewed");
                false
            }
        }
    }

    async fn resign(&self, role: &str) {
        if !self.inner.shared_store {
            return;
        }
        let engine = &self.inner.engine;
        let lease = crate::replica::role_lease(role);
        if let Err(e) = engine
            .store()
            .storage()
            .leases
            .release(&lease, engine.replica())
            .await
        {
            tracing::debug!(role, error = %e, "a role was not given up; it expires");
        }
    }

    async fn accept(&self, event: InboundEvent) -> Result<Receipt, SubmitError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        let key = event.key().clone();
        let payload = Entry::Event(event.clone()).encode();
        let journal = &self.inner.engine.store().storage().journal;
        let owner = self.inner.engine.replica();
        match journal
            .claim(&key.to_string(), event.event_id(), owner, &payload)
            .await
        {
            Ok(Claim::New) => {}
            Ok(Claim::Taken) => {
                tracing::info!(conversation = %key, event = %event.event_id(), "event accepted before; dropped");
                return Err(SubmitError::Duplicate);
            }
            // Answering beats losing the question: without the journal it is the
            // de-duplication log alone, as before.
            Err(e) => {
                tracing::warn!(error = %e, "the event could not be journaled; answering it anyway")
            }
        }
        let event_id = event.event_id().to_string();
        let queued = self.submit(event);
        if let Err(e) = &queued {
            self.refused(&key, &event_id, e).await;
        }
        queued
    }

    async fn claim(&self, arrival: &Arrival) -> Result<(), SubmitError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        let payload = Entry::Arrival {
            arrival: arrival.clone(),
        }
        .encode();
        let journal = &self.inner.engine.store().storage().journal;
        let owner = self.inner.engine.replica();
        match journal
            .claim(&arrival.key.to_string(), &arrival.event_id, owner, &payload)
            .await
        {
            Ok(Claim::New) => Ok(()),
            Ok(Claim::Taken) => {
                tracing::debug!(conversation = %arrival.key, event = %arrival.event_id, "arrival claimed before; dropped");
                Err(SubmitError::Duplicate)
            }
            // As in `accept`: answering beats losing the question.
            Err(e) => {
                tracing::warn!(error = %e, "an arrival could not be journaled; answering it anyway");
                Ok(())
            }
        }
    }

    async fn mapped(
        &self,
        arrival: &Arrival,
        event: Option<InboundEvent>,
    ) -> Result<Option<Receipt>, SubmitError> {
        let store = self.inner.engine.store();
        let Some(event) = event else {
            // Not for the bot: nothing is owed, and a redelivery is dropped.
            let _ = store.mark_handled(&arrival.key, &arrival.event_id).await;
            return Ok(None);
        };
        if event.key() == &arrival.key && event.event_id() == arrival.event_id {
            let event_id = event.event_id().to_string();
            let queued = self.submit(event);
            if let Err(e) = &queued {
                self.refused(&arrival.key, &event_id, e).await;
            }
            return queued.map(Some);
        }
        // It became another event (another conversation or id): journaled in its own name,
        // then the arrival's claim ends.
        let queued = self.accept(event).await;
        let _ = store.mark_handled(&arrival.key, &arrival.event_id).await;
        queued.map(Some)
    }

    fn arrivals(&self, platform: &str) -> Option<mpsc::Receiver<Arrival>> {
        sync::lock(&self.inner.arrivals.get(platform)?.rx).take()
    }

    fn submit(&self, event: InboundEvent) -> Result<Receipt, SubmitError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        let key = event.key().clone();
        let Some(platform) = self.inner.platforms.get(key.platform()).cloned() else {
            tracing::error!(conversation = %key, "event from a platform with no adapter; not queued");
            return Err(SubmitError::NoAdapter {
                platform: key.platform().to_string(),
            });
        };
        let (done, receipt) = Receipt::new();
        if reads_only(&event) {
            let engine = self.inner.engine.clone();
            self.inner.tracker.spawn(async move {
                engine.handle(event, platform).await;
                let _ = done.send(());
            });
            return Ok(receipt);
        }
        let mut queues = sync::lock(&self.inner.queues);
        let tx = queues
            .entry(key.clone())
            .or_insert_with(|| self.spawn_worker(key.clone(), platform.clone()));
        let job = (event, done);
        let job = match tx.try_send(job) {
            Ok(()) => {
                self.inner.queued(1);
                return Ok(receipt);
            }
            // The worker retired or died: start a fresh one and queue again.
            Err(mpsc::error::TrySendError::Closed(job)) => job,
            Err(mpsc::error::TrySendError::Full((event, _))) => {
                drop(queues);
                let capacity = self.inner.capacity;
                tracing::warn!(conversation = %key, capacity, "conversation queue full; message refused");
                let text = format!(
                    "⚠️ I'm still working through {capacity} earlier messages in this conversation, so I dropped this one. Please send it again in a moment."
                );
                tokio::spawn(async move {
                    let _ = platform
                        .ephemeral(event.reply_to(), event.author(), &text)
                        .await;
                });
                return Err(SubmitError::QueueFull { capacity });
            }
        };
        let tx = self.spawn_worker(key.clone(), platform);
        tx.try_send(job).map_err(|_| SubmitError::ShuttingDown)?;
        self.inner.queued(1);
        queues.insert(key, tx);
        Ok(receipt)
    }
}
