//! The ingestions running in each conversation, so they can be stopped: `/clear` stops a
//! conversation's ingestions and waits until they returned before it deletes anything (an
//! ingestion must not write chunks after the clear), and shutdown stops them all.

use std::collections::HashMap;
use std::sync::Mutex;

use anchorbot_platform::sync;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

/// One conversation's running ingestions.
struct Conversation {
    /// Cancelled to stop them.
    stop: CancellationToken,
    /// Counts them, so a stop can wait until they returned.
    tracker: TaskTracker,
}

/// The registry of running ingestions.
#[derive(Default)]
pub struct Running {
    /// Cancelled once every ingestion is to stop (shutdown); later ones stop at once.
    all: CancellationToken,
    /// By conversation.
    conversations: Mutex<HashMap<String, Conversation>>,
}

/// Held by one running ingestion: its stop signal, and its place in the count.
pub struct Ticket {
    /// Cancelled when the ingestion is to stop.
    pub stop: CancellationToken,
    /// Counted until dropped.
    _running: TaskTrackerToken,
}

impl Running {
    /// Registers an ingestion in `conv`; it counts as running until the ticket is dropped.
    pub fn start(&self, conv: &str) -> Ticket {
        let mut convs = sync::lock(&self.conversations);
        // A conversation whose ingestions all returned leaves an entry with nothing in it.
        convs.retain(|_, c| !c.tracker.is_empty());
        let c = convs
            .entry(conv.to_string())
            .or_insert_with(|| Conversation {
                stop: self.all.child_token(),
                tracker: TaskTracker::new(),
            });
        Ticket {
            stop: c.stop.clone(),
            _running: c.tracker.token(),
        }
    }

    /// Stops the ingestions running in `conv` and waits until each has returned. Ingestions
    /// started after this are not affected.
    pub async fn stop(&self, conv: &str) {
        let taken = sync::lock(&self.conversations).remove(conv);
        if let Some(c) = taken {
            c.stop.cancel();
            c.tracker.close();
            c.tracker.wait().await;
        }
    }

    /// Stops every ingestion, running or started later (shutdown).
    pub fn stop_all(&self) {
        self.all.cancel();
    }

    /// How many ingestions are running in `conv`.
    #[cfg(test)]
    fn count(&self, conv: &str) -> usize {
        sync::lock(&self.conversations)
            .get(conv)
            .map_or(0, |c| c.tracker.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_stop_cancels_the_conversations_ingestions_and_waits_for_them() {
        let running = Arc::new(Running::default());
        let a = running.start("a");
        let b = running.start("b");
        assert_eq!((running.count("a"), running.count("b")), (1, 1));
        let returned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let job = {
            let returned = returned.clone();
            tokio::spawn(async move {
                a.stop.cancelled().await;
                // Still cleaning up after the signal: the stop must wait for this.
                tokio::time::sleep(Duration::from_millis(50)).await;
                returned.store(true, std::sync::atomic::Ordering::SeqCst);
                drop(a);
            })
        };
        running.stop("a").await;
        assert!(returned.load(std::sync::atomic::Ordering::SeqCst));
        job.await.unwrap();
        assert!(!b.stop.is_cancelled(), "another conversation goes on");
        // A later ingestion in the stopped conversation is not cancelled.
        let later = running.start("a");
        assert!(!later.stop.is_cancelled());
        assert_eq!(running.count("a"), 1);
    }

    #[tokio::test]
    async fn stopping_all_stops_running_and_later_ingestions() {
        let running = Running::default();
        let a = running.start("a");
        running.stop_all();
        assert!(a.stop.is_cancelled());
        assert!(running.start("b").stop.is_cancelled());
        // Nothing running: the stop returns at once.
        running.stop("nobody").await;
    }
}
