//! The durable store: one context anchor per conversation in sled, plus the processed-event
//! log for de-duplication. A few fixed trees with conversation-prefixed keys (never a tree per
//! conversation: sled grows badly with many trees). Writes that report a turn done are flushed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anchorbot_migrations::{self as migrations, MigrationError};
use anchorbot_platform::{Author, ConversationKey};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use tokio::sync::watch;

/// The memory of one conversation, re-injected into every prompt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Anchor {
    /// Rolling summaries of older turns, oldest first.
    #[serde(default)]
    pub summaries: Vec<Summary>,
    /// Key facts, oldest first, without duplicates.
    #[serde(default)]
    pub facts: Vec<String>,
    /// Recent turns, oldest first.
    #[serde(default)]
    pub turns: Vec<Exchange>,
    /// Running totals.
    #[serde(default)]
    pub counters: Counters,
    /// Documents shared in the conversation.
    #[serde(default)]
    pub documents: Vec<DocumentRef>,
    /// Summarization is paused after answers that could not be trusted; the turns stay
    /// verbatim meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_hold: Option<SummaryHold>,
}

/// Why summarization is paused, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryHold {
    /// Why the last attempt was not used.
    pub reason: String,
    /// Attempts that failed in a row.
    pub failures: u32,
    /// The next attempt waits until `counters.turns_total` reaches this.
    pub retry_at_turn: u64,
}

/// One rolling summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The summary text.
    pub text: String,
    /// How many turns it stands for.
    pub covers_turns: u64,
    /// When it was written (Unix ms).
    pub at_ms: u64,
}

/// One question and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// Who asked.
    pub author: Author,
    /// The question as asked.
    pub query: String,
    /// The answer the user saw (without reasoning).
    pub answer: String,
    /// When the question arrived (Unix ms).
    pub at_ms: u64,
    /// The answer was cut at the output limit.
    #[serde(default)]
    pub truncated: bool,
    /// The platform messages that carry the answer (for feedback).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<String>,
    /// Verdicts on the answer, one per person (the latest counts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feedback: Vec<Vote>,
}

/// One person's verdict on an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Who.
    pub user: String,
    /// Thumbs up or down.
    pub positive: bool,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// Running totals for `/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Turns answered since the last `/clear`.
    pub turns_total: u64,
    /// Summarization passes run.
    pub summarizations: u64,
    /// Prompt tokens of the latest turn.
    pub prompt_tokens_last: u64,
    /// Answers marked helpful (one vote per person and answer).
    #[serde(default)]
    pub feedback_up: u64,
    /// Answers marked not helpful.
    #[serde(default)]
    pub feedback_down: u64,
}

/// A document shared in the conversation (filled by document ingestion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentRef {
    /// Document id.
    pub id: String,
    /// File name.
    pub name: String,
    /// Page count.
    pub pages: u32,
    /// Ingestion status.
    pub status: DocStatus,
}

/// Where a document is in its ingestion. Anchors written before this was an enum hold the
/// human label, which still reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocStatus {
    /// Being ingested now.
    #[serde(alias = "being read")]
    Ingesting,
    /// Every page was read.
    Ready,
    /// Read, but some pages failed (see the page list).
    #[serde(alias = "partly read")]
    Partial,
    /// Ingestion stopped part-way (crash or shutdown); sharing the file again resumes it.
    #[serde(alias = "incomplete (share it again to resume)")]
    Incomplete,
}

impl DocStatus {
    /// Human wording.
    pub fn label(self) -> &'static str {
        match self {
            DocStatus::Ingesting => "being read",
            DocStatus::Ready => "ready",
            DocStatus::Partial => "partly read (share it again to retry the unread pages)",
            DocStatus::Incomplete => "incomplete (share it again to resume)",
        }
    }
}

/// Store failures, with the variants a caller acts on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the data directory.
    #[error("the data directory {path} is in use by another anchorbot process; stop it or use another data_dir")]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// sled refused to open the directory. Nothing was deleted.
    #[error("cannot open the store at {path}: {source}. The data was left untouched; restore a backup or point data_dir elsewhere")]
    Open {
        /// The data directory.
        path: PathBuf,
        /// What sled said.
        source: sled::Error,
    },
    /// The schema could not be brought up to date.
    #[error("cannot upgrade the store: {0}")]
    Migration(#[from] MigrationError),
    /// A record does not decode.
    #[error("the stored anchor of {key} is unreadable: {reason}")]
    Corrupt {
        /// Conversation key.
        key: String,
        /// Decoder message.
        reason: String,
    },
    /// The compaction due after retention failed; the store was left as it was.
    #[error("cannot compact the store at {path} after retention: {reason}")]
    Compaction {
        /// The data directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Any other storage failure.
    #[error("storage error: {0}")]
    Io(#[from] sled::Error),
}

/// Current time in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How long processed event ids are remembered.
const SEEN_TTL_MS: u64 = 24 * 3600 * 1000;

/// Handle to the on-disk store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// The data directory.
    dir: PathBuf,
    /// The database.
    db: sled::Db,
    /// Conversation key → anchor JSON.
    anchors: sled::Tree,
    /// `key \0 event id` → time seen (Unix ms, big endian).
    seen: sled::Tree,
    /// Group commit: one flush at a time covers every write made before it started.
    flusher: Arc<Flusher>,
}

/// Group commit for [`Store::flush`]. Concurrent sled 0.34 flushes can deadlock waiting on
/// each other's stability intervals (seen here with 20 conversations committing at once), so
/// only one runs at a time; but no caller holds a lock while it runs. A caller takes a ticket,
/// and waits until a flush that started after its ticket has finished, starting one itself
/// when none is running. Twenty conversations committing at once share a flush or two.
struct Flusher {
    /// Tickets handed out.
    requested: AtomicU64,
    /// A flush is running.
    running: AtomicBool,
    /// The highest ticket the last finished flush covers, and its error, if any.
    done: watch::Sender<(u64, Option<String>)>,
}

/// Ends a running flush even if its future is dropped, so waiters are never stranded.
struct FlushRun<'a>(&'a Flusher);

impl Drop for FlushRun<'_> {
    fn drop(&mut self) {
        // Cleared before waiters are woken: a woken waiter whose ticket is not covered must
        // be able to start the next flush.
        self.0.running.store(false, Ordering::SeqCst);
        self.0.done.send_modify(|_| {});
    }
}

impl Flusher {
    async fn flush(&self, db: &sled::Db) -> Result<(), StoreError> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.done.subscribe();
        loop {
            {
                let (covered, error) = &*done.borrow_and_update();
                if *covered >= ticket {
                    return match error {
                        None => Ok(()),
                        Some(e) => Err(StoreError::Io(sled::Error::Io(std::io::Error::other(
                            e.clone(),
                        )))),
                    };
                }
            }
            if !self.running.swap(true, Ordering::SeqCst) {
                let run = FlushRun(self);
                // Every ticket handed out so far belongs to a write made before this point.
                let covers = self.requested.load(Ordering::SeqCst);
                let db = db.clone();
                let error = match tokio::task::spawn_blocking(move || db.flush()).await {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(format!("flush task failed: {e}")),
                };
                self.done.send_modify(|d| *d = (covers, error));
                drop(run);
                continue;
            }
            // A flush is running; it may have started before our ticket, so look again when
            // it ends.
            if done.changed().await.is_err() {
                return Err(StoreError::Io(sled::Error::ReportableBug(
                    "the store was closed while flushing".into(),
                )));
            }
        }
    }
}

/// How long `Store::open` waits for another handle to release the data directory.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// sled's page cache. Small: sled holds several times this much while a big document is
/// written (an 8 MB text page peaked 150 MB higher at 64 MB than at 8 MB), and reading
/// gains nothing from it (searching 26k chunks, index build included, took 0.4 s either
/// way; the OS caches the file).
const SLED_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// The sled settings of the store in `dir` (a copy written beside it uses them too).
pub fn sled_config(dir: &Path) -> sled::Config {
    sled::Config::new()
        .path(dir)
        .mode(sled::Mode::LowSpace)
        // Only explicit, serialized flushes (see `Flusher`); sled's own periodic flusher
        // would race them.
        .flush_every_ms(None)
        // sled's page cache defaults to 1 GiB, which a conversation with 100k chunks fills
        // when its index loads; the index keeps what retrieval needs itself.
        .cache_capacity(SLED_CACHE_BYTES)
}

impl Store {
    /// Opens (or creates) the store in `dir` and upgrades its schema. Never deletes data.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        // A forget or restore that crashed mid-swap is finished first (see `rights::swap`).
        crate::rights::swap::recover(dir).map_err(sled::Error::Io)?;
        // A process that just exited (a restart, or a CLI command right after the bot) can
        // hold sled's file lock for a moment while its I/O threads wind down, so a lock
        // conflict is retried briefly before it is reported.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            let opened = sled_config(dir).open();
            match opened {
                Ok(db) => break db,
                Err(source) if source.to_string().contains("lock") => {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::Locked {
                            path: dir.to_path_buf(),
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                Err(source) => {
                    return Err(StoreError::Open {
                        path: dir.to_path_buf(),
                        source,
                    })
                }
            }
        };
        // With the lock held, no other process is writing a new copy beside the store.
        crate::rights::swap::clean_after_open(dir).map_err(sled::Error::Io)?;
        // Conversations forgotten by retention while the store was open leave the disk now,
        // before anything else reads it.
        if crate::rights::swap::compaction_pending(dir) {
            let copied =
                crate::rights::swap::compact(dir, db).map_err(|e| StoreError::Compaction {
                    path: dir.to_path_buf(),
                    reason: e.to_string(),
                })?;
            tracing::info!(records = copied, "store compacted after retention");
            return Self::open(dir);
        }
        let report = migrations::migrate(&db)?;
        if report.from != report.to {
            tracing::info!(from = report.from, to = report.to, "store schema upgraded");
        }
        let store = Self {
            dir: dir.to_path_buf(),
            anchors: db.open_tree(migrations::ANCHORS_TREE)?,
            seen: db.open_tree(migrations::SEEN_TREE)?,
            db,
            flusher: Arc::new(Flusher {
                requested: AtomicU64::new(0),
                running: AtomicBool::new(false),
                done: watch::Sender::new((0, None)),
            }),
        };
        store.prune_seen()?;
        Ok(store)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The anchor of `key`; an empty anchor if the conversation is new.
    pub fn anchor(&self, key: &ConversationKey) -> Result<Anchor, StoreError> {
        match self.anchors.get(key.to_string())? {
            Some(v) => decode(key, &v),
            None => Ok(Anchor::default()),
        }
    }

    /// Every conversation that has an anchor.
    pub fn conversations(&self) -> Result<Vec<String>, StoreError> {
        self.anchors
            .iter()
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    /// Atomically applies `f` to the anchor of `key`, then flushes to disk.
    pub async fn update<F>(&self, key: &ConversationKey, f: F) -> Result<Anchor, StoreError>
    where
        F: Fn(&mut Anchor),
    {
        self.update_marking(key, None, f).await
    }

    /// Like [`Store::update`], without waiting for the disk: for bookkeeping whose loss in a
    /// crash costs nothing that was promised (the next flush carries it).
    pub fn update_lazy<F>(&self, key: &ConversationKey, f: F) -> Result<Anchor, StoreError>
    where
        F: Fn(&mut Anchor),
    {
        self.transact(key, None, f)
    }

    /// Like [`Store::update`], and records `event_id` as handled in the same transaction: a
    /// crash leaves either both (the redelivery is a duplicate) or neither (it is answered).
    pub async fn update_marking<F>(
        &self,
        key: &ConversationKey,
        event_id: Option<&str>,
        f: F,
    ) -> Result<Anchor, StoreError>
    where
        F: Fn(&mut Anchor),
    {
        let anchor = self.transact(key, event_id, f)?;
        self.flush().await?;
        Ok(anchor)
    }

    /// Applies `f` to `key`'s anchor (and marks `event_id`) in one transaction, unflushed.
    fn transact<F>(
        &self,
        key: &ConversationKey,
        event_id: Option<&str>,
        f: F,
    ) -> Result<Anchor, StoreError>
    where
        F: Fn(&mut Anchor),
    {
        let k = key.to_string();
        let seen_key = event_id.map(|id| seen_key(key, id));
        let result = (&self.anchors, &self.seen).transaction(|(t, seen)| {
            let mut anchor = match t.get(k.as_bytes())? {
                Some(v) => decode(key, &v).map_err(ConflictableTransactionError::Abort)?,
                None => Anchor::default(),
            };
            f(&mut anchor);
            let bytes = serde_json::to_vec(&anchor).expect("anchors serialize");
            t.insert(k.as_bytes(), bytes)?;
            if let Some(sk) = &seen_key {
                seen.insert(sk.as_slice(), &now_ms().to_be_bytes()[..])?;
            }
            Ok(anchor)
        });
        let anchor = match result {
            Ok(a) => a,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        };
        Ok(anchor)
    }

    /// Deletes the conversation's anchor (and with it its document list), then flushes.
    pub async fn reset(&self, key: &ConversationKey) -> Result<(), StoreError> {
        self.anchors.remove(key.to_string())?;
        self.flush().await?;
        Ok(())
    }

    /// Whether `event_id` of `key` was already handled (its turn committed, or its failure
    /// told to the user).
    pub fn was_handled(&self, key: &ConversationKey, event_id: &str) -> Result<bool, StoreError> {
        Ok(self.seen.contains_key(seen_key(key, event_id))?)
    }

    /// Records `event_id` of `key` as handled (flushed with the next flush).
    pub fn mark_handled(&self, key: &ConversationKey, event_id: &str) -> Result<(), StoreError> {
        self.seen
            .insert(seen_key(key, event_id), &now_ms().to_be_bytes()[..])?;
        Ok(())
    }

    /// The anchors tree and the key of `key`'s anchor in it, for a clear that must remove the
    /// anchor in one transaction with other trees.
    pub fn anchor_slot(&self, key: &ConversationKey) -> (&sled::Tree, Vec<u8>) {
        (&self.anchors, key.to_string().into_bytes())
    }

    /// Forgets event ids older than a day, so the log stays small.
    fn prune_seen(&self) -> Result<(), StoreError> {
        let cutoff = now_ms().saturating_sub(SEEN_TTL_MS);
        for item in self.seen.iter() {
            let (k, v) = item?;
            let at = <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if at < cutoff {
                self.seen.remove(k)?;
            }
        }
        Ok(())
    }

    /// The database, for other components' trees (documents). Flush through [`Store::flush`].
    pub fn db(&self) -> sled::Db {
        self.db.clone()
    }

    /// Forces every write made before this call to disk (group commit: see [`Flusher`]).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flusher.flush(&self.db).await
    }
}

/// `key \0 event id`: the de-duplication log's key.
fn seen_key(key: &ConversationKey, event_id: &str) -> Vec<u8> {
    format!("{key}\0{event_id}").into_bytes()
}

fn decode(key: &ConversationKey, bytes: &[u8]) -> Result<Anchor, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn author() -> Author {
        Author {
            id: "u1".into(),
            display_name: "Ann".into(),
        }
    }

    #[tokio::test]
    async fn anchors_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let key = ConversationKey::console("a").unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .update(&key, |a| {
                    a.turns.push(Exchange {
                        author: author(),
                        query: "q".into(),
                        answer: "a".into(),
                        at_ms: 1,
                        truncated: false,
                        replies: Vec::new(),
                        feedback: Vec::new(),
                    });
                    a.facts.push("fact".into());
                })
                .await
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let a = store.anchor(&key).unwrap();
        assert_eq!(a.turns.len(), 1);
        assert_eq!(a.facts, vec!["fact".to_string()]);
        assert_eq!(
            store.conversations().unwrap(),
            vec!["console:a".to_string()]
        );
    }

    #[tokio::test]
    async fn second_open_reports_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path())
            .err()
            .expect("second open must fail");
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_commits_share_flushes_and_all_reach_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let key = ConversationKey::console(&format!("c{i}")).unwrap();
                    store
                        .update(&key, |a| a.counters.turns_total = i)
                        .await
                        .unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // Every ticket was covered, without error.
        let (covered, error) = store.flusher.done.borrow().clone();
        assert_eq!(covered, 40);
        assert!(error.is_none());
        drop(store);
        let store = loop {
            match Store::open(dir.path()) {
                Ok(s) => break s,
                Err(StoreError::Locked { .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) => panic!("{e}"),
            }
        };
        for i in 0..40 {
            let key = ConversationKey::console(&format!("c{i}")).unwrap();
            assert_eq!(store.anchor(&key).unwrap().counters.turns_total, i);
        }
    }

    #[test]
    fn duplicate_events_are_detected_per_conversation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = ConversationKey::console("a").unwrap();
        let b = ConversationKey::console("b").unwrap();
        assert!(!store.was_handled(&a, "ev1").unwrap());
        store.mark_handled(&a, "ev1").unwrap();
        assert!(store.was_handled(&a, "ev1").unwrap());
        assert!(!store.was_handled(&b, "ev1").unwrap());
    }
}
