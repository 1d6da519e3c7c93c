//! The durable store: one context anchor per conversation in sled, plus the processed-event
//! log for de-duplication. A few fixed trees with conversation-prefixed keys (never a tree per
//! conversation: sled grows badly with many trees). Writes that report a turn done are flushed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anchorbot_migrations::{self as migrations, MigrationError};
use anchorbot_platform::{Author, ConversationKey};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};

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
    pub status: String,
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
    /// The database.
    db: sled::Db,
    /// Conversation key → anchor JSON.
    anchors: sled::Tree,
    /// `key \0 event id` → time seen (Unix ms, big endian).
    seen: sled::Tree,
    /// Serializes flushes: concurrent sled 0.34 flushes can deadlock waiting on each other's
    /// stability intervals (seen here with 20 conversations committing at once).
    flush_lock: Arc<tokio::sync::Mutex<()>>,
}

/// How long `Store::open` waits for another handle to release the data directory.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Store {
    /// Opens (or creates) the store in `dir` and upgrades its schema. Never deletes data.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        // A process that just exited (a restart, or a CLI command right after the bot) can
        // hold sled's file lock for a moment while its I/O threads wind down, so a lock
        // conflict is retried briefly before it is reported.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            let opened = sled::Config::new()
                .path(dir)
                .mode(sled::Mode::LowSpace)
                // Only explicit, serialized flushes (see `flush_lock`); sled's own periodic
                // flusher would race them.
                .flush_every_ms(None)
                .open();
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
        let report = migrations::migrate(&db)?;
        if report.from != report.to {
            tracing::info!(from = report.from, to = report.to, "store schema upgraded");
        }
        let store = Self {
            anchors: db.open_tree(migrations::ANCHORS_TREE)?,
            seen: db.open_tree(migrations::SEEN_TREE)?,
            db,
            flush_lock: Arc::new(tokio::sync::Mutex::new(())),
        };
        store.prune_seen()?;
        Ok(store)
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
        let k = key.to_string();
        let result = self.anchors.transaction(|t| {
            let mut anchor = match t.get(k.as_bytes())? {
                Some(v) => decode(key, &v).map_err(ConflictableTransactionError::Abort)?,
                None => Anchor::default(),
            };
            f(&mut anchor);
            let bytes = serde_json::to_vec(&anchor).expect("anchors serialize");
            t.insert(k.as_bytes(), bytes)?;
            Ok(anchor)
        });
        let anchor = match result {
            Ok(a) => a,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        };
        self.flush().await?;
        Ok(anchor)
    }

    /// Deletes the conversation's anchor (and with it its document list), then flushes.
    pub async fn reset(&self, key: &ConversationKey) -> Result<(), StoreError> {
        self.anchors.remove(key.to_string())?;
        self.flush().await?;
        Ok(())
    }

    /// Records `event_id` for `key`; false if it was already processed.
    pub fn first_sighting(
        &self,
        key: &ConversationKey,
        event_id: &str,
    ) -> Result<bool, StoreError> {
        let k = format!("{key}\0{event_id}");
        let prev = self.seen.compare_and_swap(
            k.as_bytes(),
            None as Option<&[u8]>,
            Some(&now_ms().to_be_bytes()[..]),
        )?;
        Ok(prev.is_ok())
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

    /// Forces everything to disk, one flush at a time.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.flush_lock.lock().await;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| {
                StoreError::Io(sled::Error::ReportableBug(format!(
                    "flush task failed: {e}"
                )))
            })??;
        Ok(())
    }
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

    #[test]
    fn duplicate_events_are_detected_per_conversation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = ConversationKey::console("a").unwrap();
        let b = ConversationKey::console("b").unwrap();
        assert!(store.first_sighting(&a, "ev1").unwrap());
        assert!(!store.first_sighting(&a, "ev1").unwrap());
        assert!(store.first_sighting(&b, "ev1").unwrap());
    }
}
