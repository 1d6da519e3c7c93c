//! Start-up and shutdown: [`App::build`] opens the store and the model endpoint,
//! [`App::run_until_stopped`] runs the adapters until their sources end or the shutdown signal
//! fires, then lets every queued turn finish and flushes the store. `main` and the tests start
//! the app the same way.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use anchorbot_platform::{Adapter, EventSink, Platform, PlatformError, Shutdown};
use tokio::task::JoinSet;

use crate::commands::SPECS;
use crate::dispatch::Dispatcher;
use std::time::Duration;

use crate::docs::Documents;
use crate::engine::Engine;
use crate::pool::{EndpointPool, PoolPolicy};
use crate::retrieval::Retriever;
use crate::settings::{Settings, SettingsError};
use crate::store::{Store, StoreError};
use crate::tokens::Tiktoken;

/// How long adapters get to stop taking events at shutdown.
const ADAPTER_STOP: Duration = Duration::from_secs(10);

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
    Tokenizer(#[from] crate::tokens::TokenizerError),
    /// The document store could not be opened.
    #[error("cannot open the document store: {0}")]
    Documents(String),
    /// An adapter failed.
    #[error("adapter {adapter} failed: {source}")]
    Adapter {
        /// Adapter name.
        adapter: &'static str,
        /// What went wrong.
        source: PlatformError,
    },
}

/// A built application, ready to run.
pub struct App {
    /// The engine shared by every conversation.
    engine: Arc<Engine>,
    /// Per-conversation queue size.
    queue_capacity: usize,
    /// Time between endpoint health checks.
    health_interval: Duration,
    /// Adapters to run.
    adapters: Vec<Box<dyn Adapter>>,
}

impl App {
    /// Validates `settings`, opens the store (migrating it) and prepares the model endpoint.
    pub async fn build(settings: Settings) -> Result<Self, AppError> {
        settings.validate()?;
        let (counter, exact) = match &settings.reasoning.tokenizer {
            Some(path) => (Tiktoken::from_file(path)?, true),
            None => (Tiktoken::cl100k(), false),
        };
        let store = Store::open(&settings.data_dir)?;
        let policy = PoolPolicy {
            retries: settings.retries,
            backoff: Duration::from_millis(settings.retry_backoff_ms),
            cooldown: Duration::from_secs(settings.health_cooldown_secs),
        };
        let llm = Arc::new(EndpointPool::new(
            settings.reasoning.with_fallbacks(),
            policy,
        ));
        let counter: Arc<dyn crate::tokens::TokenCounter> = Arc::new(counter);
        let mut docs = Documents::new(
            store.clone(),
            settings.documents.clone(),
            settings.vision.clone(),
            counter.clone(),
        )
        .map_err(|e| AppError::Documents(e.to_string()))?;
        if settings.documents.rerank == crate::settings::RerankChoice::Llm {
            let limit = Duration::from_millis(settings.documents.rerank_timeout_ms.max(1));
            docs.set_reranker(Arc::new(
                crate::docs::rerank::Reranker::new(llm.clone(), limit)
                    .with_think_start(settings.reasoning.think_start()),
            ));
        }
        let queue_capacity = settings.queue_capacity;
        let health_interval = Duration::from_secs(settings.health_cooldown_secs.max(1));
        let mut engine = Engine::new(Arc::new(settings), store, llm, counter, exact);
        engine.set_documents(Arc::new(docs));
        let engine = Arc::new(engine);
        Ok(Self {
            engine,
            queue_capacity,
            health_interval,
            adapters: Vec::new(),
        })
    }

    /// The engine, for one-shot commands (`ask`, `status`, `clear`).
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
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
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), AppError> {
        let platforms: HashMap<String, Arc<dyn Platform>> = self
            .adapters
            .iter()
            .map(|a| (a.name().to_string(), a.platform()))
            .collect();
        let dispatcher = Dispatcher::new(self.engine.clone(), platforms, self.queue_capacity);
        let sink: Arc<dyn EventSink> = Arc::new(dispatcher.clone());
        let (stop_adapters, shutdown_signal) = Shutdown::new();
        let mut running = JoinSet::new();
        for adapter in self.adapters {
            let name = adapter.name();
            let sink = sink.clone();
            let signal = shutdown_signal.clone();
            running.spawn(async move { (name, adapter.run(sink, SPECS, signal).await) });
        }
        // Periodic endpoint health checks, so failover order follows reality between turns.
        let engine = self.engine.clone();
        let interval = self.health_interval;
        let health = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
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
                        failure = Some(AppError::Adapter { adapter: name, source });
                        break;
                    }
                    Some(Ok((name, Ok(())))) => tracing::info!(adapter = name, "adapter finished"),
                    Some(Err(e)) => tracing::error!(error = %e, "adapter task panicked"),
                },
            }
        }
        // Adapters stop taking events (and acknowledge what they have), then the queued turns
        // finish below. An adapter that does not return in time is cut off.
        let _ = stop_adapters.send(true);
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
        health.abort();
        dispatcher.drain().await;
        self.engine.drain_background().await;
        self.engine.store().flush().await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
