//! The board of files being read in the background: which messages with files each
//! conversation has waiting or being read, in arrival order, and what each file is doing.
//!
//! A plain state machine (no I/O, no waiting): the engine's lanes ([`super::attachments`]) take
//! their next job from it and report back. Its rules:
//! - a conversation reads one message's files at a time, in the order they arrived (one lane
//!   per conversation, started by the first message and retired when it has nothing left);
//! - a message still waiting or being read is refused as a duplicate when it is delivered
//!   again, so a redelivery never reads a file twice;
//! - at most [`PER_CONVERSATION`] messages per conversation and [`PENDING`] in all are waiting
//!   or being read; more are refused, never queued without bound;
//! - `/clear` ends the message being read (its cancel token) and turns every message that
//!   arrived before it into one that is dropped unread.

use std::collections::{HashMap, VecDeque};

use anchorbot_platform::ConversationKey;
use tokio_util::sync::CancellationToken;

/// Most messages with files waiting or being read in one conversation.
pub const PER_CONVERSATION: usize = 8;

/// Most messages with files waiting or being read in all conversations.
pub const PENDING: usize = 64;

/// Most files read at the same time across conversations. Embedding is one model behind a
/// lock, so more would only wait there while holding their file in memory.
pub const READING_AT_ONCE: usize = 2;

/// Why a message with files was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The same event is already waiting or being read.
    Duplicate,
    /// This conversation has [`PER_CONVERSATION`] messages with files already.
    ConversationFull,
    /// All conversations together have [`PENDING`] messages with files already.
    AllFull,
}

/// How a message with files was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// The conversation had nothing being read: the caller starts its lane.
    NewLane,
    /// Queued behind `ahead` messages of the same conversation; its lane is running.
    Queued {
        /// Messages of this conversation before it.
        ahead: usize,
    },
}

/// A job handed to its lane.
#[derive(Debug)]
pub struct Next<J> {
    /// The job.
    pub job: J,
    /// A `/clear` came after it arrived: drop it unread.
    pub cleared: bool,
    /// Cancelled by `/clear` or the shutdown deadline while it runs.
    pub cancel: CancellationToken,
}

/// A running job's handles, for `/clear`.
#[derive(Debug, Clone)]
pub struct Stopping {
    /// Ends the job's work (the caller cancels it once the documents' own stop was asked).
    pub cancel: CancellationToken,
    /// Cancelled when the job has returned.
    pub finished: CancellationToken,
}

/// One file of a message.
#[derive(Debug, Clone)]
struct File {
    /// Its name.
    name: String,
    /// The latest progress note, once it started.
    note: Option<String>,
    /// Read (or refused): no longer listed.
    done: bool,
}

/// A message waiting for its lane.
#[derive(Debug)]
struct Waiting<J> {
    event_id: String,
    files: Vec<String>,
    /// The lane's generation when it arrived.
    generation: u64,
    job: J,
}

/// The message a lane is working on.
#[derive(Debug)]
struct Current {
    event_id: String,
    files: Vec<File>,
    /// A `/clear` arrived while it ran.
    cleared: bool,
    cancel: CancellationToken,
    finished: CancellationToken,
}

/// One conversation's messages with files.
#[derive(Debug)]
struct Lane<J> {
    waiting: VecDeque<Waiting<J>>,
    current: Option<Current>,
    /// Bumped by each `/clear`: a message from an older generation is dropped unread.
    generation: u64,
}

impl<J> Lane<J> {
    fn len(&self) -> usize {
        self.waiting.len() + usize::from(self.current.is_some())
    }

    fn holds(&self, event_id: &str) -> bool {
        self.current
            .as_ref()
            .is_some_and(|c| c.event_id == event_id)
            || self.waiting.iter().any(|w| w.event_id == event_id)
    }
}

/// Every conversation's files being read or waiting.
#[derive(Debug)]
pub struct Board<J> {
    lanes: HashMap<ConversationKey, Lane<J>>,
    /// Messages admitted and not finished, in all lanes.
    pending: usize,
    /// Limit per conversation.
    per_conversation: usize,
    /// Limit in all.
    total: usize,
}

impl<J> Default for Board<J> {
    fn default() -> Self {
        Self::with_limits(PER_CONVERSATION, PENDING)
    }
}

impl<J> Board<J> {
    /// A board with the given limits.
    pub fn with_limits(per_conversation: usize, total: usize) -> Self {
        Self {
            lanes: HashMap::new(),
            pending: 0,
            per_conversation,
            total,
        }
    }

    /// Takes a message with files, or says why not (handing the job back).
    pub fn admit(
        &mut self,
        key: &ConversationKey,
        event_id: &str,
        files: Vec<String>,
        job: J,
    ) -> Result<Admitted, (Refusal, J)> {
        let lane = self.lanes.get(key);
        if lane.is_some_and(|l| l.holds(event_id)) {
            return Err((Refusal::Duplicate, job));
        }
        if lane.is_some_and(|l| l.len() >= self.per_conversation) {
            return Err((Refusal::ConversationFull, job));
        }
        if self.pending >= self.total {
            return Err((Refusal::AllFull, job));
        }
        self.pending += 1;
        let admitted = match lane {
            Some(l) => Admitted::Queued { ahead: l.len() },
            None => Admitted::NewLane,
        };
        let lane = self.lanes.entry(key.clone()).or_insert_with(|| Lane {
            waiting: VecDeque::new(),
            current: None,
            generation: 0,
        });
        lane.waiting.push_back(Waiting {
            event_id: event_id.to_string(),
            files,
            generation: lane.generation,
            job,
        });
        Ok(admitted)
    }

    /// The lane's next job, which becomes its current one; `None` retires the lane (it had
    /// nothing left, and the next message starts a new one).
    ///
    /// Called by the lane with no job current (after [`Board::finish`]).
    pub fn next(&mut self, key: &ConversationKey) -> Option<Next<J>> {
        let lane = self.lanes.get_mut(key)?;
        debug_assert!(lane.current.is_none(), "a lane runs one job at a time");
        let Some(w) = lane.waiting.pop_front() else {
            self.lanes.remove(key);
            return None;
        };
        let cancel = CancellationToken::new();
        lane.current = Some(Current {
            event_id: w.event_id,
            files: w
                .files
                .into_iter()
                .map(|name| File {
                    name,
                    note: None,
                    done: false,
                })
                .collect(),
            cleared: false,
            cancel: cancel.clone(),
            finished: CancellationToken::new(),
        });
        Some(Next {
            job: w.job,
            cleared: w.generation < lane.generation,
            cancel,
        })
    }

    /// The lane's current job has returned: its event is no longer in flight, and a `/clear`
    /// waiting for it goes on.
    pub fn finish(&mut self, key: &ConversationKey) {
        if let Some(c) = self.lanes.get_mut(key).and_then(|l| l.current.take()) {
            self.pending = self.pending.saturating_sub(1);
            c.finished.cancel();
        }
    }

    /// Records the latest progress note of file `file` of the current job.
    pub fn note(&mut self, key: &ConversationKey, file: usize, note: String) {
        if let Some(f) = self.current_file(key, file) {
            f.note = Some(note);
        }
    }

    /// File `file` of the current job is read (or refused): no longer listed.
    pub fn file_done(&mut self, key: &ConversationKey, file: usize) {
        if let Some(f) = self.current_file(key, file) {
            f.done = true;
        }
    }

    fn current_file(&mut self, key: &ConversationKey, file: usize) -> Option<&mut File> {
        self.lanes
            .get_mut(key)?
            .current
            .as_mut()?
            .files
            .get_mut(file)
    }

    /// `/clear` in `key`: every message waiting is dropped unread when its turn comes, and the
    /// current one (returned, for the caller to stop and wait for) is marked cleared.
    pub fn clear(&mut self, key: &ConversationKey) -> Option<Stopping> {
        let lane = self.lanes.get_mut(key)?;
        lane.generation += 1;
        let c = lane.current.as_mut()?;
        c.cleared = true;
        Some(Stopping {
            cancel: c.cancel.clone(),
            finished: c.finished.clone(),
        })
    }

    /// Whether a `/clear` arrived while the current job of `key` ran.
    pub fn cleared(&self, key: &ConversationKey) -> bool {
        self.lanes
            .get(key)
            .and_then(|l| l.current.as_ref())
            .is_some_and(|c| c.cleared)
    }

    /// The shutdown deadline passed: every running job is cancelled (waiting ones are cut
    /// when their lane takes them, by the engine's cutting flag).
    pub fn cut_all(&self) {
        for c in self.lanes.values().filter_map(|l| l.current.as_ref()) {
            c.cancel.cancel();
        }
    }

    /// The files of `key` being read or waiting, one line each: the latest progress note, or
    /// that it waits.
    pub fn reading(&self, key: &ConversationKey) -> Vec<String> {
        let Some(lane) = self.lanes.get(key) else {
            return Vec::new();
        };
        let current = lane.current.iter().flat_map(|c| {
            c.files.iter().filter(|f| !f.done).map(|f| match &f.note {
                Some(note) => note.clone(),
                None => format!("{}: waiting its turn", f.name),
            })
        });
        let waiting = lane
            .waiting
            .iter()
            .flat_map(|w| w.files.iter().map(|n| format!("{n}: waiting its turn")));
        current.chain(waiting).collect()
    }

    /// Messages with files waiting or being read, in all conversations.
    pub fn pending(&self) -> usize {
        self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str) -> ConversationKey {
        ConversationKey::new("test", Some("W"), c, None).unwrap()
    }

    fn files(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_conversation_reads_its_messages_one_at_a_time_in_order() {
        let mut b = Board::default();
        let a = key("a");
        assert_eq!(b.admit(&a, "e1", files(&["one"]), 1), Ok(Admitted::NewLane));
        assert_eq!(
            b.admit(&a, "e2", files(&["two"]), 2),
            Ok(Admitted::Queued { ahead: 1 })
        );
        let first = b.next(&a).unwrap();
        assert_eq!(first.job, 1);
        assert!(!first.cleared);
        // Still queued behind the running one.
        assert_eq!(
            b.admit(&a, "e3", files(&["three"]), 3),
            Ok(Admitted::Queued { ahead: 2 })
        );
        b.finish(&a);
        assert_eq!(b.next(&a).unwrap().job, 2);
        b.finish(&a);
        assert_eq!(b.next(&a).unwrap().job, 3);
        b.finish(&a);
        // Nothing left: the lane retires, and the next message starts a new one.
        assert!(b.next(&a).is_none());
        assert_eq!(b.pending(), 0);
        assert_eq!(
            b.admit(&a, "e4", files(&["four"]), 4),
            Ok(Admitted::NewLane)
        );
    }

    #[test]
    fn conversations_have_their_own_lanes() {
        let mut b = Board::default();
        assert_eq!(
            b.admit(&key("a"), "e1", files(&["x"]), 1),
            Ok(Admitted::NewLane)
        );
        assert_eq!(
            b.admit(&key("b"), "e1", files(&["y"]), 2),
            Ok(Admitted::NewLane)
        );
        assert_eq!(b.next(&key("b")).unwrap().job, 2);
        assert_eq!(b.next(&key("a")).unwrap().job, 1);
    }

    #[test]
    fn a_redelivery_of_a_message_in_flight_is_a_duplicate_until_it_finished() {
        let mut b = Board::default();
        let a = key("a");
        b.admit(&a, "e1", files(&["f"]), 1).unwrap();
        assert_eq!(
            b.admit(&a, "e1", files(&["f"]), 9).unwrap_err(),
            (Refusal::Duplicate, 9),
            "while waiting"
        );
        b.next(&a).unwrap();
        assert_eq!(
            b.admit(&a, "e1", files(&["f"]), 9).unwrap_err().0,
            Refusal::Duplicate,
            "while being read"
        );
        // The same id in another conversation is another event.
        assert!(b.admit(&key("b"), "e1", files(&["f"]), 2).is_ok());
        b.finish(&a);
        // Finished (and marked handled in the store by then): the board lets it through.
        assert!(b.admit(&a, "e1", files(&["f"]), 3).is_ok());
    }

    #[test]
    fn the_limits_refuse_rather_than_queue_without_bound() {
        let mut b = Board::with_limits(2, 3);
        let (a, c) = (key("a"), key("c"));
        b.admit(&a, "e1", files(&["f"]), 1).unwrap();
        b.admit(&a, "e2", files(&["f"]), 2).unwrap();
        assert_eq!(
            b.admit(&a, "e3", files(&["f"]), 3).unwrap_err().0,
            Refusal::ConversationFull
        );
        b.admit(&c, "e1", files(&["f"]), 4).unwrap();
        assert_eq!(
            b.admit(&key("d"), "e1", files(&["f"]), 5).unwrap_err().0,
            Refusal::AllFull
        );
        // One finishes: room again, for one.
        b.next(&a).unwrap();
        b.finish(&a);
        assert_eq!(b.pending(), 2);
        assert!(b.admit(&a, "e3", files(&["f"]), 3).is_ok());
        assert_eq!(
            b.admit(&key("d"), "e1", files(&["f"]), 5).unwrap_err().0,
            Refusal::AllFull
        );
    }

    #[test]
    fn clear_stops_the_current_job_and_drops_the_earlier_ones_unread() {
        let mut b = Board::default();
        let a = key("a");
        b.admit(&a, "e1", files(&["one"]), 1).unwrap();
        b.admit(&a, "e2", files(&["two"]), 2).unwrap();
        let running = b.next(&a).unwrap();
        let stopping = b.clear(&a).expect("a job is running");
        assert!(b.cleared(&a));
        // The caller cancels after asking the documents to stop; the board only hands it over.
        assert!(!running.cancel.is_cancelled());
        stopping.cancel.cancel();
        assert!(running.cancel.is_cancelled());
        assert!(!stopping.finished.is_cancelled());
        // A message after the clear is read normally.
        b.admit(&a, "e3", files(&["three"]), 3).unwrap();
        b.finish(&a);
        assert!(stopping.finished.is_cancelled(), "the clear goes on");
        let second = b.next(&a).unwrap();
        assert_eq!((second.job, second.cleared), (2, true));
        assert!(!b.cleared(&a), "the flag was the cleared job's");
        b.finish(&a);
        let third = b.next(&a).unwrap();
        assert_eq!((third.job, third.cleared), (3, false));
        // Nothing running: nothing to wait for.
        b.finish(&a);
        b.admit(&a, "e4", files(&["four"]), 4).unwrap();
        assert!(b.clear(&a).is_none());
        assert!(b.clear(&key("nobody")).is_none());
    }

    #[test]
    fn cut_all_cancels_every_running_job() {
        let mut b = Board::default();
        b.admit(&key("a"), "e1", files(&["f"]), 1).unwrap();
        b.admit(&key("b"), "e1", files(&["f"]), 2).unwrap();
        let (ra, rb) = (b.next(&key("a")).unwrap(), b.next(&key("b")).unwrap());
        b.cut_all();
        assert!(ra.cancel.is_cancelled() && rb.cancel.is_cancelled());
    }

    #[test]
    fn reading_lists_each_files_latest_note_and_the_waiting_ones() {
        let mut b = Board::default();
        let a = key("a");
        assert!(b.reading(&a).is_empty());
        b.admit(&a, "e1", files(&["one.pdf", "two.txt"]), 1)
            .unwrap();
        b.admit(&a, "e2", files(&["three.md"]), 2).unwrap();
        assert_eq!(
            b.reading(&a),
            [
                "one.pdf: waiting its turn",
                "two.txt: waiting its turn",
                "three.md: waiting its turn"
            ]
        );
        b.next(&a).unwrap();
        b.note(&a, 0, "Indexing one.pdf: page 1/9".into());
        b.note(&a, 0, "Indexing one.pdf: page 4/9".into());
        assert_eq!(b.reading(&a)[0], "Indexing one.pdf: page 4/9");
        b.file_done(&a, 0);
        b.note(&a, 1, "Reading two.txt…".into());
        assert_eq!(
            b.reading(&a),
            ["Reading two.txt…", "three.md: waiting its turn"]
        );
        // Notes for files that do not exist are ignored, not a panic.
        b.note(&a, 7, "nothing".into());
        b.note(&key("b"), 0, "nothing".into());
    }
}
