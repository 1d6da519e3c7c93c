//! The ops HTTP server: `/healthz` (200 while the process serves), `/readyz` (200 only when
//! the store is open, a reasoning endpoint is healthy and every platform is connected or
//! standing by while another replica holds its connection; 503 naming the failed checks
//! otherwise; `notes` names the platforms standing by) and `/metrics` (Prometheus text).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anchorbot_platform::Platform;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::store::Store;

/// Why the ops server could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// `metrics.listen` is not an address.
    #[error("metrics.listen (ANCHORBOT_METRICS_LISTEN) = {0:?} is not an address such as 127.0.0.1:9464")]
    BadListen(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr} for /metrics: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Each reasoning endpoint's label and whether it is up, as the model back-end reports it. A
/// function rather than the back-end itself, so the ops server needs nothing of the model
/// pipeline.
pub type EndpointHealth = Arc<dyn Fn() -> Vec<(String, bool)> + Send + Sync>;

/// What `/readyz` looks at.
pub struct Readiness {
    /// The store (ready while it answers a read).
    pub store: Store,
    /// The reasoning endpoints and their health.
    pub reasoning: EndpointHealth,
    /// Every configured platform, by name.
    pub platforms: Vec<(String, Arc<dyn Platform>)>,
    /// Set once shutdown starts: no longer ready for new work.
    pub stopping: Arc<AtomicBool>,
}

/// How long readiness waits for the store to answer.
const STORE_READY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// What `/readyz` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The checks that fail, each as `name: reason`; empty when ready.
    pub failed: Vec<String>,
    /// Checks that pass in a way worth knowing, each as `name: what`: a platform standing
    /// by while another replica holds its connection.
    pub notes: Vec<String>,
}

impl Readiness {
    /// The checks that fail, each as `name: reason`; empty when ready.
    pub async fn failures(&self) -> Vec<String> {
        self.report().await.failed
    }

    /// Every check: what fails, and what passes standing by.
    pub async fn report(&self) -> Report {
        let mut failed = Vec::new();
        let mut notes = Vec::new();
        if self.stopping.load(Ordering::SeqCst) {
            failed.push("shutdown: the bot is shutting down".to_string());
        }
        // A read proves the store is open and answering; a database that hangs is not ready.
        let ready = self.store.storage().maintenance.ready();
        match tokio::time::timeout(STORE_READY_WAIT, ready).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed.push(format!("store: {e}")),
            Err(_) => failed.push(format!(
                "store: no answer within {} s",
                STORE_READY_WAIT.as_secs()
            )),
        }
        let health = (self.reasoning)();
        if !health.iter().any(|(_, up)| *up) {
            let down: Vec<&str> = health.iter().map(|(url, _)| url.as_str()).collect();
            failed.push(format!(
                "reasoning: no healthy endpoint ({})",
                down.join(", ")
            ));
        }
        for (name, platform) in &self.platforms {
            // A replica standing by is ready: it takes over when the holder goes.
            if platform.standby() {
                notes.push(format!(
                    "platform {name}: standby, another replica holds the connection"
                ));
            } else if !platform.connected() {
                failed.push(format!("platform {name}: not connected"));
            }
        }
        Report { failed, notes }
    }
}

/// Shared by the handlers.
struct Ops {
    /// Renders `/metrics`.
    metrics: PrometheusHandle,
    /// Answers `/readyz`.
    readiness: Readiness,
}

/// Parses and binds `listen`.
pub async fn bind(listen: &str) -> Result<TcpListener, OpsError> {
    let addr: SocketAddr = listen
        .trim()
        .parse()
        .map_err(|_| OpsError::BadListen(listen.to_string()))?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| OpsError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Serves the ops endpoints on `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, metrics: PrometheusHandle, readiness: Readiness) {
    let state = Arc::new(Ops { metrics, readiness });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the ops server stopped");
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ops): State<Arc<Ops>>) -> Response {
    let Report { failed, notes } = ops.readiness.report().await;
    let status = if failed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({ "ready": failed.is_empty(), "failed": failed, "notes": notes })
        .to_string();
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body + "\n",
    )
        .into_response()
}

async fn render(State(ops): State<Arc<Ops>>) -> Response {
    ops.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ops.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchorbot_platform::{
        Attachment, Author, Limits, MessageRef, PlatformError, ReplyTarget, Status,
    };

    /// A platform that is only its connection state.
    struct Link {
        connected: bool,
        standby: bool,
    }

    #[async_trait::async_trait]
    impl Platform for Link {
        fn limits(&self) -> Limits {
            Limits {
                max_message_chars: 2000,
                min_edit_interval: std::time::Duration::from_secs(1),
            }
        }
        async fn post(&self, _: &ReplyTarget, _: &str) -> Result<MessageRef, PlatformError> {
            Err(PlatformError::Rejected("not in this test".into()))
        }
        async fn edit(&self, _: &MessageRef, _: &str) -> Result<(), PlatformError> {
            Ok(())
        }
        async fn ephemeral(
            &self,
            _: &ReplyTarget,
            _: &Author,
            _: &str,
        ) -> Result<(), PlatformError> {
            Ok(())
        }
        async fn status(&self, _: &ReplyTarget, _: &Status) -> Result<(), PlatformError> {
            Ok(())
        }
        fn connected(&self) -> bool {
            self.connected
        }
        fn standby(&self) -> bool {
            self.standby
        }
        async fn fetch(&self, _: &Attachment, _: u64) -> Result<Vec<u8>, PlatformError> {
            Ok(Vec::new())
        }
    }

    async fn readiness(dir: &std::path::Path, link: Link) -> Readiness {
        let storage = crate::storage::Location::Sled(dir.to_path_buf())
            .open()
            .await
            .unwrap();
        let policy = crate::llm::pool::PoolPolicy {
            retries: 0,
            backoff: std::time::Duration::ZERO,
            cooldown: std::time::Duration::from_secs(1),
        };
        let endpoints = crate::settings::Settings::default()
            .reasoning
            .with_fallbacks();
        Readiness {
            store: Store::new(storage),
            reasoning: {
                let pool = crate::llm::pool::EndpointPool::new(endpoints, policy);
                Arc::new(move || pool.health())
            },
            platforms: vec![("discord".into(), Arc::new(link) as Arc<dyn Platform>)],
            stopping: Arc::new(AtomicBool::new(false)),
        }
    }

    #[tokio::test]
    async fn a_standby_is_ready_and_a_holder_without_its_session_is_not() {
        let cases = [
            (true, false, Report::default()),
            (
                false,
                true,
                Report {
                    failed: Vec::new(),
                    notes: vec![
                        "platform discord: standby, another replica holds the connection".into(),
                    ],
                },
            ),
            (
                false,
                false,
                Report {
                    failed: vec!["platform discord: not connected".into()],
                    notes: Vec::new(),
                },
            ),
        ];
        for (connected, standby, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let r = readiness(dir.path(), Link { connected, standby }).await;
            assert_eq!(
                r.report().await,
                expected,
                "connected {connected}, standby {standby}"
            );
            assert_eq!(r.failures().await, expected.failed);
        }
    }
}
