//! The local embedding model's own thread. Every embedding of one model runs there, one
//! request at a time (fastembed needs the model `&mut`), fed by a bounded queue: requests
//! that wait, wait on the queue, not as blocking-pool threads parked on a lock, and the
//! model's allocations stay on one thread instead of spreading over the pool's.

use std::panic::AssertUnwindSafe;

use tokio::sync::{mpsc, oneshot};

use super::embed::{normalize, EmbedError};

/// Requests waiting for the model (more wait on the queue's send).
const QUEUE: usize = 16;

/// Texts to embed, and where their vectors go.
type Job = (
    Vec<String>,
    oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>,
);

/// A handle to the thread that owns a model; the thread ends when the handle is dropped.
pub struct ModelThread {
    jobs: mpsc::Sender<Job>,
}

impl ModelThread {
    /// Starts a thread named `name` owning `model`, which embeds `batch` texts per inference.
    pub fn start(
        name: &str,
        mut model: fastembed::TextEmbedding,
        batch: usize,
    ) -> Result<Self, EmbedError> {
        let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                while let Some((texts, reply)) = rx.blocking_recv() {
                    // A panic inside the runtime fails this request, not every later one.
                    let out = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        model.embed(&texts, Some(batch))
                    }));
                    let out = match out {
                        Ok(Ok(mut vectors)) => {
                            vectors.iter_mut().for_each(|v| normalize(v));
                            Ok(vectors)
                        }
                        Ok(Err(e)) => Err(EmbedError::Failed(e.to_string())),
                        Err(_) => Err(EmbedError::Failed("the embedding model panicked".into())),
                    };
                    let _ = reply.send(out);
                }
            })
            .map_err(|e| EmbedError::Failed(format!("cannot start the embedding thread: {e}")))?;
        Ok(Self { jobs })
    }

    /// Embeds `texts` on the model's thread, one unit vector each, in order.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let stopped = || EmbedError::Failed("the embedding thread stopped".into());
        let (reply, vectors) = oneshot::channel();
        self.jobs
            .send((texts, reply))
            .await
            .map_err(|_| stopped())?;
        vectors.await.map_err(|_| stopped())?
    }
}
