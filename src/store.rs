//! Conversation memory: the context anchor of each conversation (its summaries, key facts and
//! recent turns) and the de-duplication log of the events it handled, typed over the storage
//! seam ([`crate::storage::Conversations`]), whichever backend holds them. Writes that report
//! a turn done are durable before they return.

use anchorbot_platform::{Author, ConversationKey};
use serde::{Deserialize, Serialize};

pub use crate::storage::now_ms;
pub use crate::storage::StorageError as StoreError;
use crate::storage::{Durability, Storage};
use anchorbot_platform::sync;

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
    /// Documents listed by anchors written before the document store became the one record
    /// of a document; read so those anchors still load, never written now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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

/// The conversations' memory over a store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    storage: Storage,
}

impl Store {
    /// Memory over `storage`.
    pub fn new(storage: Storage) -> Self {
        Self { storage }
    }

    /// The store underneath (documents and maintenance share it).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The anchor of `key`; an empty anchor if the conversation is new.
    pub async fn anchor(&self, key: &ConversationKey) -> Result<Anchor, StoreError> {
        match self.storage.conversations.anchor(&key.to_string()).await? {
            Some(v) => decode(key, &v),
            None => Ok(Anchor::default()),
        }
    }

    /// Every conversation that has an anchor.
    pub async fn conversations(&self) -> Result<Vec<String>, StoreError> {
        self.storage.conversations.anchored().await
    }

    /// Atomically applies `f` to the anchor of `key`, durably.
    pub async fn update<F>(&self, key: &ConversationKey, f: F) -> Result<Anchor, StoreError>
    where
        F: Fn(&mut Anchor) + Send + Sync,
    {
        self.edit(key, None, Durability::Flushed, f).await
    }

    /// Like [`Store::update`], without waiting for the disk: for bookkeeping whose loss in a
    /// crash costs nothing that was promised (the next flush carries it).
    pub async fn update_lazy<F>(&self, key: &ConversationKey, f: F) -> Result<Anchor, StoreError>
    where
        F: Fn(&mut Anchor) + Send + Sync,
    {
        self.edit(key, None, Durability::Lazy, f).await
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
        F: Fn(&mut Anchor) + Send + Sync,
    {
        self.edit(key, event_id, Durability::Flushed, f).await
    }

    async fn edit<F>(
        &self,
        key: &ConversationKey,
        event_id: Option<&str>,
        durability: Durability,
        f: F,
    ) -> Result<Anchor, StoreError>
    where
        F: Fn(&mut Anchor) + Send + Sync,
    {
        // The anchor the last run of the edit made is the one written (a backend may run the
        // edit again after a conflict), so it need not be decoded back from the bytes.
        let made = std::sync::Mutex::new(None);
        let edit = |current: Option<&[u8]>| -> Result<Vec<u8>, StoreError> {
            let mut anchor = match current {
                Some(bytes) => decode(key, bytes)?,
                None => Anchor::default(),
            };
            f(&mut anchor);
            let bytes = serde_json::to_vec(&anchor).expect("anchors serialize");
            *sync::lock(&made) = Some(anchor);
            Ok(bytes)
        };
        let written = self
            .storage
            .conversations
            .update_anchor(&key.to_string(), event_id, durability, &edit)
            .await?;
        match made.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(anchor) => Ok(anchor),
            None => decode(key, &written),
        }
    }

    /// Deletes the conversation's anchor, durably.
    pub async fn reset(&self, key: &ConversationKey) -> Result<(), StoreError> {
        self.storage
            .conversations
            .remove_anchor(&key.to_string())
            .await
    }

    /// Whether `event_id` of `key` was already handled (its turn committed, or its failure
    /// told to the user).
    pub async fn was_handled(
        &self,
        key: &ConversationKey,
        event_id: &str,
    ) -> Result<bool, StoreError> {
        self.storage
            .conversations
            .was_handled(&key.to_string(), event_id)
            .await
    }

    /// Records `event_id` of `key` as handled (durable with the next flush).
    pub async fn mark_handled(
        &self,
        key: &ConversationKey,
        event_id: &str,
    ) -> Result<(), StoreError> {
        self.storage
            .conversations
            .mark_handled(&key.to_string(), event_id)
            .await
    }

    /// Forces every write made before this call to disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.storage.conversations.flush().await
    }
}

fn decode(key: &ConversationKey, bytes: &[u8]) -> Result<Anchor, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: format!("anchor of {key}"),
        reason: e.to_string(),
    })
}
