//! The storage seam: what the engine, the documents and the data-rights commands may ask of
//! a store, as three traits over bytes and keys, and the backends behind them.
//!
//! - [`Conversations`]: each conversation's anchor (its memory), and the de-duplication marks
//!   of the events it handled;
//! - [`DocumentRows`]: each conversation's document records, chunks, vectors and kept files;
//! - [`Maintenance`]: listing, clearing and erasing a conversation (atomic across both),
//!   readiness, and what the backend is.
//!
//! The traits know nothing of anchors or documents: records are opaque bytes (JSON) written
//! and read by [`crate::store::Store`] and [`crate::docs::DocStore`], which own their types.
//! A conversation is named by its key as text (`slack:T1/C2/1712345678.000100`).
//!
//! Two backends: sled in the data directory (the embedded default, [`sled`]), and PostgreSQL
//! when `database_url` is a `postgres://` URL ([`postgres`]). What only one backend can do
//! (sled's backup file and compaction; `pg_dump` for PostgreSQL) is reached through
//! [`Location`], never through the traits.

pub mod copy;
pub mod error;
pub mod holds;
pub mod location;
pub mod postgres;
pub mod sled;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

pub use self::sled::backup::BackupSummary;
pub use error::StorageError;
pub use holds::{RateHold, RateHolds};
pub use location::Location;

/// Current time in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What must be kept out of logs for the database URL `url`: its password (as written and
/// decoded) and the whole URL; nothing for a URL that does not parse. Whichever backend the
/// URL names, callers need not know it.
pub fn url_secrets(url: &secrecy::SecretString) -> Vec<String> {
    postgres::secrets(url)
}

/// Why `url` cannot name a database store (the reason never holds the password), if it
/// cannot.
pub fn check_database_url(url: &secrecy::SecretString) -> Result<(), String> {
    postgres::check_url(url)
}

/// One stored chunk: its place in its document, its record (JSON) and its vector (unit
/// length, little-endian `f32`s; empty when only the record was asked for).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRow {
    /// Document id.
    pub doc: String,
    /// Page (1-based; 0 in a document without pages).
    pub page: u32,
    /// Position within the page (or within the document, without pages).
    pub position: u32,
    /// The chunk record (JSON).
    pub record: Vec<u8>,
    /// The vector, as little-endian `f32`s.
    pub vector: Vec<u8>,
}

/// One document record (JSON) with the fields the store indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct DocRow {
    /// Document id.
    pub doc: String,
    /// When its ingestion started (Unix ms), for listings and retention: the record's own
    /// `ingested_at_ms` (sled reads it from the record; a database keeps it in a column).
    pub ingested_ms: u64,
    /// The record (JSON).
    pub record: Vec<u8>,
}

/// How much a conversation stores: records and bytes (keys and values) across every table or
/// tree, and its documents and chunks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvSize {
    /// The conversation key.
    pub conv: String,
    /// Records (rows) of every kind.
    pub records: u64,
    /// Bytes of keys and values (the backend's own overhead not counted).
    pub bytes: u64,
    /// Documents.
    pub documents: u64,
    /// Chunks.
    pub chunks: u64,
    /// Vectors.
    pub vectors: u64,
    /// The latest document ingestion (Unix ms); 0 when none.
    pub last_ingested_ms: u64,
}

/// Whether a write must be on disk before the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk when the call returns (a turn that is about to be shown).
    Flushed,
    /// Carried by the next flush (bookkeeping whose loss in a crash costs nothing promised).
    Lazy,
}

/// Turns the current anchor (if any) into the new one. May run more than once (a backend
/// retries a transaction that conflicted), so it must not have side effects.
pub type AnchorEdit<'a> =
    &'a (dyn Fn(Option<&[u8]>) -> Result<Vec<u8>, StorageError> + Send + Sync);

/// Anchors and de-duplication marks.
#[async_trait]
pub trait Conversations: Send + Sync {
    /// The anchor of `conv`, if it has one.
    async fn anchor(&self, conv: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Applies `edit` to `conv`'s anchor and, when `event` is given, marks that event handled,
    /// in one transaction. Returns the anchor written.
    async fn update_anchor(
        &self,
        conv: &str,
        event: Option<&str>,
        durability: Durability,
        edit: AnchorEdit<'_>,
    ) -> Result<Vec<u8>, StorageError>;

    /// Deletes `conv`'s anchor (durably).
    async fn remove_anchor(&self, conv: &str) -> Result<(), StorageError>;

    /// Whether `event` of `conv` was handled.
    async fn was_handled(&self, conv: &str, event: &str) -> Result<bool, StorageError>;

    /// Marks `event` of `conv` handled (durable with the next flush).
    async fn mark_handled(&self, conv: &str, event: &str) -> Result<(), StorageError>;

    /// Every conversation with an anchor.
    async fn anchored(&self) -> Result<Vec<String>, StorageError>;

    /// Puts every write made before this call on disk.
    async fn flush(&self) -> Result<(), StorageError>;
}

/// Document records, chunks, vectors and kept files, per conversation.
#[async_trait]
pub trait DocumentRows: Send + Sync {
    /// The conversation's document records, in no particular order.
    async fn records(&self, conv: &str) -> Result<Vec<DocRow>, StorageError>;

    /// Every conversation's document records, as `(conversation, record)`.
    async fn all_records(&self) -> Result<Vec<(String, DocRow)>, StorageError>;

    /// Writes a document record.
    async fn put_record(&self, conv: &str, doc: &DocRow) -> Result<(), StorageError>;

    /// Writes chunks with their vectors and the document's record in one transaction: all of
    /// it is stored, or none.
    async fn commit(
        &self,
        conv: &str,
        doc: &DocRow,
        chunks: &[ChunkRow],
    ) -> Result<(), StorageError>;

    /// Deletes one page's chunks and vectors and writes the record, in one transaction.
    async fn clear_page(&self, conv: &str, doc: &DocRow, page: u32) -> Result<(), StorageError>;

    /// Deletes one document: record, chunks, vectors and kept file.
    async fn remove_document(&self, conv: &str, doc: &str) -> Result<(), StorageError>;

    /// Keeps the file of a document (for retries without it).
    async fn put_source(&self, conv: &str, doc: &str, bytes: &[u8]) -> Result<(), StorageError>;

    /// The kept file of a document.
    async fn source(&self, conv: &str, doc: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Forgets the kept file of a document.
    async fn remove_source(&self, conv: &str, doc: &str) -> Result<(), StorageError>;

    /// Deletes kept files whose document is gone; returns how many.
    async fn prune_sources(&self) -> Result<usize, StorageError>;

    /// One chunk's record.
    async fn chunk(
        &self,
        conv: &str,
        doc: &str,
        page: u32,
        position: u32,
    ) -> Result<Option<Vec<u8>>, StorageError>;

    /// A document's chunks in page and position order, with their vectors.
    async fn document_chunks(&self, conv: &str, doc: &str) -> Result<Vec<ChunkRow>, StorageError>;

    /// Every chunk of the conversation with its vector, in key order, handed to `each` one at a
    /// time (so a conversation with 100k chunks is never held twice).
    async fn scan_chunks(
        &self,
        conv: &str,
        each: &mut (dyn FnMut(ChunkRow) + Send),
    ) -> Result<(), StorageError>;

    /// Documents, chunks and vectors stored for the conversation.
    async fn counts(&self, conv: &str) -> Result<(u64, u64, u64), StorageError>;
}

/// Whether a claim made the event this process's to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// No process claimed or handled it before: it is journaled, and this process answers it.
    New,
    /// Claimed or handled already (a redelivery, or its twin reached another process).
    Taken,
}

/// An accepted event whose answer is not committed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journaled {
    /// The conversation key.
    pub conv: String,
    /// The event id (its claim).
    pub event: String,
    /// The process answering it (its replica id).
    pub owner: String,
    /// The event as the engine journaled it (JSON).
    pub payload: Vec<u8>,
    /// The messages its answer posted so far, as the engine noted them (empty: none).
    pub reply: Vec<u8>,
    /// When it was claimed (Unix ms).
    pub at_ms: u64,
}

/// The journal of accepted events: an event is claimed (and journaled) before the platform
/// is told it arrived, and its claim is marked done in the transaction that commits its turn
/// ([`Conversations::update_anchor`] with the event) or by [`Conversations::mark_handled`].
/// Whatever is still pending after a crash is answered by the next process.
#[async_trait]
pub trait Journal: Send + Sync {
    /// Claims `event` of `conv` for `owner` (a replica id) and journals `payload` with it,
    /// durably, in one write: one claim per event, whichever process asks first.
    async fn claim(
        &self,
        conv: &str,
        event: &str,
        owner: &str,
        payload: &[u8],
    ) -> Result<Claim, StorageError>;

    /// Every claimed event not yet done, oldest first.
    async fn pending(&self) -> Result<Vec<Journaled>, StorageError>;

    /// Moves a pending event from `from` (a process that died) to `to`, if it is still
    /// `from`'s: whether `to` owns it now. Two processes adopting the same event: one wins.
    async fn adopt(
        &self,
        conv: &str,
        event: &str,
        from: &str,
        to: &str,
    ) -> Result<bool, StorageError>;

    /// Notes `reply` (the messages the answer posted so far) on a pending event, replacing
    /// what was noted before; nothing when the event is no longer pending.
    async fn note_reply(&self, conv: &str, event: &str, reply: &[u8]) -> Result<(), StorageError>;
}

/// Named leases with an expiry: what one process at a time may do (answer one conversation,
/// run the hourly jobs, hold the Discord gateway). A holder renews its lease before it
/// expires; a holder that dies leaves it to expire.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Takes `name` for `holder` for `ttl` when it is free, expired, or already `holder`'s (a
    /// renewal). Returns whether `holder` holds it now.
    async fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StorageError>;

    /// Gives `name` up, if `holder` holds it.
    async fn release(&self, name: &str, holder: &str) -> Result<(), StorageError>;

    /// Who holds `name` now, if anyone (an expired lease is held by no one).
    async fn holder(&self, name: &str) -> Result<Option<String>, StorageError>;

    /// How many unexpired leases have a name starting with `prefix` (`replica:` counts the
    /// live replicas).
    async fn count(&self, prefix: &str) -> Result<usize, StorageError>;
}

/// Listing, clearing and erasing conversations; readiness.
#[async_trait]
pub trait Maintenance: Send + Sync {
    /// Every conversation with anything stored, with its size.
    async fn sizes(&self) -> Result<Vec<ConvSize>, StorageError>;

    /// The size of one conversation (all zeros when nothing is stored).
    async fn size_of(&self, conv: &str) -> Result<ConvSize, StorageError>;

    /// `/clear`: deletes the anchor, documents, chunks, vectors and kept files of `conv` in one
    /// transaction. The de-duplication marks stay. Returns (documents, chunks) removed.
    async fn clear(&self, conv: &str) -> Result<(u64, u64), StorageError>;

    /// Forgets `conv`: everything [`Maintenance::clear`] removes and its de-duplication
    /// marks, in one transaction, durably. Returns what was removed.
    async fn erase(&self, conv: &str) -> Result<ConvSize, StorageError>;

    /// Called after conversations were erased from the running store: sled marks itself for
    /// compaction at its next open (it cannot rewrite its own open files); a database reclaims
    /// the space itself.
    async fn reclaim_later(&self) -> Result<(), StorageError>;

    /// Writes a backup of the whole store to `file`, where the backend has its own format.
    async fn backup(&self, file: &Path) -> Result<BackupSummary, StorageError>;

    /// Answers when the store can serve a read.
    async fn ready(&self) -> Result<(), StorageError>;

    /// What and where the store is, for logs and `doctor`, without any password.
    fn describe(&self) -> String;
}

/// A store: the three seams over one backend. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    /// Anchors and de-duplication marks.
    pub conversations: Arc<dyn Conversations>,
    /// Documents, chunks, vectors and kept files.
    pub documents: Arc<dyn DocumentRows>,
    /// Listing, clearing, erasing, readiness.
    pub maintenance: Arc<dyn Maintenance>,
    /// Accepted events not answered yet.
    pub journal: Arc<dyn Journal>,
    /// Leases shared by every process on the store.
    pub leases: Arc<dyn Leases>,
    /// Rate-limit holds shared by every process on the store.
    pub holds: Arc<dyn RateHolds>,
    /// Other processes may write this store while this one runs (a database): what this
    /// process caches from it must be checked against it.
    pub shared: bool,
}

impl Storage {
    /// The three seams of one backend value.
    pub fn of<B>(backend: Arc<B>) -> Self
    where
        B: Conversations + DocumentRows + Maintenance + Journal + Leases + RateHolds + 'static,
    {
        Self {
            conversations: backend.clone(),
            documents: backend.clone(),
            maintenance: backend.clone(),
            journal: backend.clone(),
            leases: backend.clone(),
            holds: backend,
            shared: false,
        }
    }

    /// The same store, marked as one other processes share.
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("backend", &self.maintenance.describe())
            .finish()
    }
}
