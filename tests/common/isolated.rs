//! A process stand-in for replica tests: a runtime of its own, so that [`Isolated::kill`]
//! ends everything it runs at once (turns, lease renewals, connections), with no shutdown
//! code, as a `kill -9` would; unlike aborting one task, which leaves the tasks it spawned
//! running.

use std::future::Future;

/// A runtime that stands for one process.
pub struct Isolated {
    rt: Option<tokio::runtime::Runtime>,
}

impl Isolated {
    /// A fresh two-thread runtime.
    pub fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        Self { rt: Some(rt) }
    }

    /// Runs `f` in this "process" and waits for its result.
    pub async fn run<F, T>(&self, f: F) -> T
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let rt = self.rt.as_ref().expect("not killed");
        rt.spawn(f).await.expect("the task ran")
    }

    /// Starts `f` in this "process"; its handle can be awaited from anywhere.
    pub fn spawn<F, T>(&self, f: F) -> tokio::task::JoinHandle<T>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.rt.as_ref().expect("not killed").spawn(f)
    }

    /// Ends every task of this "process" where it stands.
    pub fn kill(mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Default for Isolated {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
