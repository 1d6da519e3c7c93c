//! Start-up and shutdown: [`App::build`] opens the store and the model endpoint,
//! [`App::run_until_stopped`] runs the adapters (and the ops endpoints, when
//! `metrics.listen` is set) until their sources end or the shutdown signal fires, then lets
//! the queued turns and the files being read finish within `shutdown_grace_secs`, cuts off the
//! ones still running (their users are told; no partial answer is stored, and a file cut off
//! resumes when it is shared again) and flushes the store. `main` and the tests start the app
//! the same way.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anchorbot_platform::{Adapter, EventSink, Platform, PlatformError, Shutdown};
use tokio::task::JoinSet;

use crate::commands::SPECS;
use crate::dispatch::Dispatcher;
use std::time::Duration;

use crate::docs::Documents;
use crate::engine::Engine;
use crate::llm::pool::{EndpointPool, PoolPolicy};
use crate::llm::tokens::Tiktoken;
use crate::retrieval::Retriever;
use crate::settings::{Settings, SettingsError};
use crate::store::{Store, StoreError};

/// How long adapters get to stop taking events at shutdown.
const ADAPTER_STOP: Duration = Duration::from_secs(10);

/// How long turns cut off at the shutdown deadline get to deliver their note.
const CUT_WAIT: Duration = Duration::from_secs(5);

/// Start-up and run failures.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad configuration.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The store could not be opened; nothing was deleted.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configured tokenizer cannot be used.
    #[error(transparent)]
    Tokenizer(#[from] crate::llm::tokens::TokenizerError),
    /// The document store could not be opened; why is its source (a report such as
    /// `main`'s `{:#}` prints it after a colon, as before).
    #[error("cannot open the document store")]
    Documents(#[source] crate::docs::DocError),
    /// The ops endpoints cannot be served.
    #[error(transparent)]
    Ops(#[from] crate::ops::OpsError),
    /// An adapter failed.
    #[error("adapter {adapter} failed: {error}")]
    Adapter {
        /// Adapter name.
        adapter: &'static str,
        /// What went wrong (in the message, not a `source`, so a report prints it once).
        error: PlatformError,
    },
}

/// A built application, ready to run.
pub struct App {
    /// The engine shared by every conversation.
    engine: Arc<Engine>,
    /// The documents service the engine holds (as a trait), for the commands that work on
    /// documents directly (`ingest --retry-failed`, `search`) and for retention.
    docs: Arc<Documents>,
    /// Per-conversation queue size.
    queue_capacity: usize,
    /// Time between endpoint health checks.
    health_interval: Duration,
    /// Adapters to run.
    adapters: Vec<Box<dyn Adapter>>,
    /// The reasoning endpoints, whose health `/readyz` reports.
    reasoning: Arc<dyn crate::llm::ChatBackend>,
    /// Where the ops endpoints listen (`metrics.listen`); `None`: off.
    ops_listen: Option<String>,
    /// The bound ops listener, once [`App::bind_ops`] ran.
    ops_listener: Option<tokio::net::TcpListener>,
    /// How long the turns in flight get at shutdown.
    grace: Duration,
    /// Idle conversations are forgotten after this many days (`retention_days`).
    retention_days: Option<u32>,
    /// The store is a database other processes may share (so their events are theirs while
    /// they live).
    shared_store: bool,
}

impl App {
    /// Validates `settings`, opens the store (migrating it) and prepares the model endpoint.
    pub async fn build(settings: Settings) -> Result<Self, AppError> {
        settings.validate()?;
        if settings.metrics.listen.is_some() {
            // Before anything records, so the endpoints' first health is counted.
            crate::ops::metrics::install();
        }
        let (counter, exact) = match &settings.reasoning.tokenizer {
            Some(path) => (Tiktoken::from_file(path)?, true),
            None => (Tiktoken::cl100k(), false),
        };
        let storage = settings.store_location().open().await?;
        tracing::info!(store = %storage.maintenance.describe(), "store open");
        let store = Store::new(storage);
        let policy = PoolPolicy {
            retries: settings.retries,
            backoff: Duration::from_millis(settings.retry_backoff_ms),
            cooldown: Duration::from_secs(settings.health_cooldown_secs),
        };
        let llm: Arc<dyn crate::llm::ChatBackend> = if settings.reasoning.is_embedded() {
            let model = Arc::new(crate::llm::embedded::LazyEmbedded::new(
                settings.reasoning.embedded_model_path(),
            ));
            // Loaded in the background: commands that never ask the model do not wait for it,
            // and the first question usually finds it ready.
            let preload = model.clone();
            tokio::spawn(async move { preload.preload().await });
            model
        } else {
            Arc::new(EndpointPool::new(
                settings.reasoning.with_fallbacks(),
                policy,
            ))
        };
        let counter: Arc<dyn crate::llm::tokens::TokenCounter> = Arc::new(counter);
        let mut docs = Documents::new(
            store.clone(),
            settings.documents.clone(),
            settings.vision.clone(),
            counter.clone(),
        )
        .map_err(AppError::Documents)?;
        docs.store().recover().await.map_err(AppError::Documents)?;
        // One cache of what the servers report, shared by the engine and the reranker.
        let facts = crate::llm::facts::FactsCache::new(llm.clone());
        if settings.documents.rerank == crate::settings::RerankChoice::Llm {
            let limit = Duration::from_millis(settings.documents.rerank_timeout_ms.max(1));
            docs.set_reranker(Arc::new(
                crate::docs::rerank::Reranker::new(llm.clone(), limit)
                    .with_think_start(settings.reasoning.think_start())
                    .with_facts(facts.clone()),
            ));
        }
        let queue_capacity = settings.queue_capacity;
        let health_interval = Duration::from_secs(settings.health_cooldown_secs.max(1));
        let ops_listen = settings.metrics.listen.clone();
        let grace = Duration::from_secs(settings.shutdown_grace_secs);
        let retention_days = settings.retention_days;
        let shared_store = settings.store_location().is_database();
        let reasoning = llm.clone();
        let mut engine = Engine::new(Arc::new(settings), store, llm, counter, exact);
        engine.set_facts(facts);
        let docs = Arc::new(docs);
        engine.set_documents(docs.clone());
        let engine = Arc::new(engine);
        Ok(Self {
            engine,
            docs,
            queue_capacity,
            health_interval,
            adapters: Vec::new(),
            reasoning,
            ops_listen,
            ops_listener: None,
            grace,
            retention_days,
            shared_store,
        })
    }

    /// Binds the ops endpoints' address (`metrics.listen`) and returns it; `None` when they are
    /// off. [`App::run_until_stopped`] serves them (binding first if this was not called).
    pub async fn bind_ops(&mut self) -> Result<Option<SocketAddr>, AppError> {
        if self.ops_listener.is_none() {
            if let Some(listen) = &self.ops_listen {
                let listener = crate::ops::server::bind(listen).await?;
                self.ops_listener = Some(listener);
            }
        }
        let addr = match &self.ops_listener {
            Some(l) => Some(
                l.local_addr()
                    .map_err(|source| crate::ops::OpsError::Bind {
                        addr: self.ops_listen.clone().unwrap_or_default(),
                        source,
                    })?,
            ),
            None => None,
        };
        Ok(addr)
    }

    /// The engine, for one-shot commands (`ask`, `status`, `clear`).
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// The documents service.
    pub fn documents(&self) -> Arc<Documents> {
        self.docs.clone()
    }

    /// The store the app opened (the adapters' budget is shared through it on a database,
    /// [`crate::adapters::configured_on`]).
    pub fn storage(&self) -> &crate::storage::Storage {
        self.engine.store().storage()
    }

    /// Adds the document retriever used when the reasoning model is offline.
    pub fn with_retriever(mut self, retriever: Arc<dyn Retriever>) -> Self {
        Arc::get_mut(&mut self.engine)
            .expect("the engine is not shared before run")
            .set_retriever(retriever);
        self
    }

    /// Adds a platform adapter to run.
    pub fn with_adapter(mut self, adapter: Box<dyn Adapter>) -> Self {
        self.adapters.push(adapter);
        self
    }

    /// Runs until every adapter's source ends or `shutdown` resolves, then finishes the queued
    /// turns and flushes the store.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), AppError> {
        let ops_addr = self.bind_ops().await?;
        // Idle conversations go before any event is taken, then hourly.
        let retention =
            crate::rights::retention::start(self.engine.clone(), &self.docs, self.retention_days)
                .await;
        let platforms: HashMap<String, Arc<dyn Platform>> = self
            .adapters
            .iter()
            .map(|a| (a.name().to_string(), a.platform()))
            .collect();
        let stopping = Arc::new(AtomicBool::new(false));
        let ops = self.ops_listener.take().map(|listener| {
            if let Some(addr) = ops_addr {
                tracing::info!("metrics listening on {addr}");
            }
            let readiness = crate::ops::Readiness {
                store: self.engine.store().clone(),
                reasoning: {
                    let backend = self.reasoning.clone();
                    Arc::new(move || backend.health())
                },
                platforms: platforms
                    .iter()
                    .map(|(n, p)| (n.clone(), p.clone()))
                    .collect(),
                stopping: stopping.clone(),
            };
            tokio::spawn(crate::ops::server::serve(
                listener,
                crate::ops::metrics::install(),
                readiness,
            ))
        });
        let dispatcher = Dispatcher::new(
            self.engine.clone(),
            platforms,
            self.queue_capacity,
            self.shared_store,
        );
        let sink: Arc<dyn EventSink> = Arc::new(dispatcher.clone());
        let (stop_adapters, shutdown_signal) = Shutdown::new();
        if self.shared_store {
            // Alive before the first event is accepted: an event whose owner holds no
            // liveness lease is taken over by the other replicas.
            let replica = self.engine.replica();
            let leases = &self.engine.store().storage().leases;
            let lease = crate::replica::liveness_lease(replica);
            if let Err(e) = leases
                .try_acquire(&lease, replica, crate::replica::LIVENESS_TTL)
                .await
            {
                tracing::warn!(error = %e, "liveness lease not taken");
            }
        }
        let mut running = JoinSet::new();
        for adapter in self.adapters {
            let name = adapter.name();
            let sink = sink.clone();
            let signal = shutdown_signal.clone();
            running.spawn(async move { (name, adapter.run(sink, SPECS, signal).await) });
        }
        // What was accepted and not answered by a process that is gone is answered here: at
        // once on a store only this process opens; on a shared database once the process that
        // took it stops renewing its liveness lease, checked every few seconds.
        let liveness = self.shared_store.then(|| {
            let (engine, dispatcher) = (self.engine.clone(), dispatcher.clone());
            AbortOnDrop(tokio::spawn(async move {
                let lease = crate::replica::liveness_lease(engine.replica());
                let mut tick = tokio::time::interval(crate::replica::LIVENESS_RENEW);
                loop {
                    tick.tick().await;
                    let leases = &engine.store().storage().leases;
                    if let Err(e) = leases
                        .try_acquire(&lease, engine.replica(), crate::replica::LIVENESS_TTL)
                        .await
                    {
                        tracing::warn!(error = %e, "liveness lease not renewed");
                    }
                    dispatcher.replay(false).await;
                }
            }))
        });
        if !self.shared_store {
            dispatcher.replay(true).await;
        }
        // Periodic endpoint health checks, so failover order follows reality between turns.
        let engine = self.engine.clone();
        let interval = self.health_interval;
        // With readiness served, the endpoints' health must be known from the start, not
        // assumed until the first periodic check.
        let check_now = ops.is_some();
        let health = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            if check_now {
                engine.health_check().await;
            }
            loop {
                tick.tick().await;
                engine.health_check().await;
            }
        });
        let mut failure = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    tracing::info!("shutdown requested");
                    break;
                }
                next = running.join_next() => match next {
                    None => break,
                    Some(Ok((name, Err(source)))) => {
                        tracing::error!(adapter = name, error = %source, "adapter stopped");
                        failure = Some(AppError::Adapter {
                            adapter: name,
                            error: source,
                        });
                        break;
                    }
                    Some(Ok((name, Ok(())))) => tracing::info!(adapter = name, "adapter finished"),
                    Some(Err(e)) => tracing::error!(error = %e, "adapter task panicked"),
                },
            }
        }
        stopping.store(true, Ordering::SeqCst);
        // Adapters stop taking events (and acknowledge what they have), then the queued turns
        // finish, all within the grace period. An adapter that does not return in time is cut
        // off; turns still running at the deadline are cut off and tell their users.
        let _ = stop_adapters.send(true);
        let deadline = tokio::time::Instant::now() + self.grace;
        let engine = self.engine.clone();
        let finish = async {
            let stopped = tokio::time::timeout(ADAPTER_STOP, async {
                while let Some(done) = running.join_next().await {
                    if let Ok((name, Err(e))) = done {
                        tracing::warn!(adapter = name, error = %e, "adapter stopped with an error");
                    }
                }
            })
            .await;
            if stopped.is_err() {
                tracing::warn!("an adapter did not stop within {ADAPTER_STOP:?}; cutting it off");
                running.abort_all();
            }
            dispatcher.drain().await;
            engine.drain_background().await;
        };
        tokio::pin!(finish);
        if tokio::time::timeout_at(deadline, &mut finish)
            .await
            .is_err()
        {
            tracing::warn!(
                grace_secs = self.grace.as_secs(),
                "turns still running at the shutdown deadline; cutting them off"
            );
            self.engine.cut_running();
            if tokio::time::timeout(CUT_WAIT, &mut finish).await.is_err() {
                tracing::warn!(
                    "turns did not end within {CUT_WAIT:?} of being cut off; exiting anyway"
                );
            }
        }
        health.abort();
        if liveness.is_some() {
            drop(liveness);
            // Gone on purpose: what this process accepted and did not answer (turns cut off at
            // the deadline) is taken over by the others at their next look, not after the
            // lease would have expired.
            let lease = crate::replica::liveness_lease(self.engine.replica());
            let leases = &self.engine.store().storage().leases;
            if let Err(e) = leases.release(&lease, self.engine.replica()).await {
                tracing::debug!(error = %e, "liveness lease not released; it expires");
            }
        }
        if let Some(r) = retention {
            r.abort();
        }
        self.engine.store().flush().await?;
        if let Some(ops) = ops {
            ops.abort();
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Aborts a background task when dropped (with the run it belongs to).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
