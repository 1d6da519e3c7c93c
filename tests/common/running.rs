//! The one way a test runs a real `App`: [`RunningApp::start`] spawns `run_until_stopped` with
//! a stop signal, and [`RunningApp::stop`] fires it and waits for a clean exit. The wrappers
//! for each platform (`SlackApp`, `DiscordApp`, the recording adapter's `Running`) add their
//! own "wait until connected" on top.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinHandle};

/// How long [`RunningApp::stop`] waits for the app to drain and return.
pub const STOP_WAIT: Duration = Duration::from_secs(30);

/// What the app task returns.
pub type AppTask = JoinHandle<Result<(), anchorbot::AppError>>;

/// The shutdown future given to `run_until_stopped`: it resolves when [`RunningApp::stop`]
/// fires it, or when the [`RunningApp`] is dropped (a test that panics stops its app).
pub struct StopSignal(oneshot::Receiver<()>);

impl Future for StopSignal {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A real `App` running in a task until [`RunningApp::stop`].
pub struct RunningApp {
    stop: Option<oneshot::Sender<()>>,
    task: AppTask,
}

impl RunningApp {
    /// Spawns `app.run_until_stopped` on the current runtime.
    pub fn start(app: anchorbot::App) -> Self {
        Self::spawn(|stopped| tokio::spawn(app.run_until_stopped(stopped)))
    }

    /// Starts the task that `run` spawns with the stop signal: for an app built inside the
    /// task, or run in a runtime of its own (a replica's "process").
    pub fn spawn(run: impl FnOnce(StopSignal) -> AppTask) -> Self {
        let (tx, rx) = oneshot::channel();
        Self {
            stop: Some(tx),
            task: run(StopSignal(rx)),
        }
    }

    /// Whether the app has returned (by itself: it was not stopped).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the app and waits (up to 30 s) for it to drain; asserts it returned `Ok`.
    pub async fn stop(self) {
        self.stop_within(STOP_WAIT, "the app").await;
    }

    /// Stops the app and waits up to `limit` for it to drain; asserts it returned `Ok`.
    /// `who` names it in the failure ("the replica did not stop").
    pub async fn stop_within(mut self, limit: Duration, who: &str) {
        self.signal();
        tokio::time::timeout(limit, self.task)
            .await
            .unwrap_or_else(|_| panic!("{who} did not stop"))
            .unwrap()
            .unwrap();
    }

    /// Stops the app and waits up to 30 s, whatever it returns (a benchmark's figures are
    /// printed by then).
    pub async fn stop_quietly(mut self) {
        self.signal();
        let _ = tokio::time::timeout(STOP_WAIT, self.task).await;
    }

    /// Waits, with no limit, for an app whose adapters ended to return, without stopping it;
    /// asserts it returned `Ok`.
    pub async fn ended(self) {
        self.join().await.unwrap().unwrap();
    }

    /// Waits for the app to return, without stopping it, and gives what it returned.
    pub async fn join(self) -> Result<Result<(), anchorbot::AppError>, JoinError> {
        // Held until the app returns: dropping it would stop the app.
        let _stop = self.stop;
        self.task.await
    }

    fn signal(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
