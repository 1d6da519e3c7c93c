//! The sled backend: the embedded default, one database in the data directory. What only sled
//! needs lives here: the key layout ([`keys`]), group commit ([`flush`]), the crash-safe
//! directory swap behind compaction and restore ([`swap`]), and the backup file ([`backup`]).
//! The `migrations` crate upgrades its schema, from here only.

pub mod backup;
pub mod flush;
pub mod holds;
pub mod keys;
pub mod swap;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anchorbot_migrations::{self as migrations, MigrationError};
use async_trait::async_trait;
use serde::Deserialize;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::{
    now_ms, AnchorEdit, ChunkRow, Claim, ConvSize, Conversations, DocRow, DocumentRows, Durability,
    Journal, Journaled, Leases, Maintenance, StorageError,
};
use flush::Flusher;

impl From<sled::Error> for StorageError {
    fn from(e: sled::Error) -> Self {
        StorageError::Backend(e.to_string())
    }
}

impl From<MigrationError> for StorageError {
    fn from(e: MigrationError) -> Self {
        StorageError::Schema(e.to_string())
    }
}

/// How long processed event ids are remembered.
const SEEN_TTL_MS: u64 = 24 * 3600 * 1000;

/// How long `open` waits for another handle to release the data directory.
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

/// Whether a store was ever written in `dir`.
pub fn exists(dir: &Path) -> bool {
    dir.join("conf").exists() || swap::new_dir(dir).join(swap::COMPLETE).exists()
}

/// The store in one data directory.
pub struct SledStore {
    dir: PathBuf,
    db: sled::Db,
    anchors: sled::Tree,
    seen: sled::Tree,
    docs: sled::Tree,
    chunks: sled::Tree,
    vectors: sled::Tree,
    sources: sled::Tree,
    journal: sled::Tree,
    leases: sled::Tree,
    /// Rate-limit holds, in memory (see [`holds`]).
    holds: holds::MemoryHolds,
    flusher: Flusher,
}

/// The one field of a document record the listings need.
#[derive(Deserialize)]
struct Stamp {
    #[serde(default)]
    ingested_at_ms: u64,
}

fn ingested_ms(record: &[u8]) -> u64 {
    serde_json::from_slice::<Stamp>(record).map_or(0, |s| s.ingested_at_ms)
}

/// Counts one record of tree `tree` in `size`: a record and its bytes, and what kind it is.
fn tally(size: &mut ConvSize, tree: &[u8], key: &[u8], value: &[u8]) {
    size.records += 1;
    size.bytes += (key.len() + value.len()) as u64;
    match tree {
        n if n == keys::DOCS_TREE.as_bytes() => {
            size.documents += 1;
            size.last_ingested_ms = size.last_ingested_ms.max(ingested_ms(value));
        }
        n if n == keys::CHUNKS_TREE.as_bytes() => size.chunks += 1,
        n if n == keys::VECTORS_TREE.as_bytes() => size.vectors += 1,
        _ => {}
    }
}

fn tx_error(e: TransactionError<StorageError>) -> StorageError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir` and upgrades its schema. Never deletes data.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        // A forget or restore that crashed mid-swap is finished first (see `swap`).
        swap::recover(dir).map_err(|e| StorageError::file(dir, e))?;
        // A process that just exited (a restart, or a CLI command right after the bot) can
        // hold sled's file lock for a moment while its I/O threads wind down, so a lock
        // conflict is retried briefly before it is reported.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match sled_config(dir).open() {
                Ok(db) => break db,
                Err(source) if source.to_string().contains("lock") => {
                    if std::time::Instant::now() >= deadline {
                        return Err(StorageError::Locked {
                            path: dir.to_path_buf(),
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                Err(source) => {
                    return Err(StorageError::Open {
                        location: dir.display().to_string(),
                        reason: source.to_string(),
                    })
                }
            }
        };
        // With the lock held, no other process is writing a new copy beside the store.
        swap::clean_after_open(dir).map_err(|e| StorageError::file(dir, e))?;
        // Conversations forgotten by retention while the store was open leave the disk now,
        // before anything else reads it.
        if swap::compaction_pending(dir) {
            let copied = swap::compact(dir, db).map_err(|e| StorageError::Compaction {
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
            anchors: db.open_tree(keys::ANCHORS_TREE)?,
            seen: db.open_tree(keys::SEEN_TREE)?,
            docs: db.open_tree(keys::DOCS_TREE)?,
            chunks: db.open_tree(keys::CHUNKS_TREE)?,
            vectors: db.open_tree(keys::VECTORS_TREE)?,
            sources: db.open_tree(keys::SOURCES_TREE)?,
            journal: db.open_tree(keys::JOURNAL_TREE)?,
            leases: db.open_tree(keys::LEASES_TREE)?,
            db,
            holds: holds::MemoryHolds::default(),
            flusher: Flusher::default(),
        };
        store.prune_seen()?;
        // sled lets one process open the store, so every lease in it belongs to a process
        // that is gone.
        store.leases.clear()?;
        Ok(store)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The database (for a backup or a compaction copy).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Forgets event ids older than a day, so the log stays small.
    fn prune_seen(&self) -> Result<(), StorageError> {
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

    fn prefix_keys(tree: &sled::Tree, prefix: &[u8]) -> Result<Vec<sled::IVec>, StorageError> {
        Ok(tree.scan_prefix(prefix).keys().collect::<Result<_, _>>()?)
    }

    /// Every tree that can hold conversation records.
    fn data_trees(&self) -> Result<Vec<(sled::IVec, sled::Tree)>, StorageError> {
        let mut out = Vec::new();
        for name in self.db.tree_names() {
            if name.as_ref() == keys::META_TREE.as_bytes()
                || name.as_ref() == keys::LEASES_TREE.as_bytes()
                || name.as_ref() == keys::DEFAULT_TREE
            {
                continue;
            }
            let tree = self.db.open_tree(&name)?;
            out.push((name, tree));
        }
        Ok(out)
    }

    /// Deletes the documents, chunks, vectors, kept files and anchor of `conv` in one
    /// transaction, unflushed. Returns (documents, chunks) removed.
    fn clear_records(&self, conv: &str) -> Result<(u64, u64), StorageError> {
        let prefix = keys::conv_prefix(conv);
        // Events of one conversation are handled one at a time, so nothing adds to these
        // prefixes between the scan and the transaction.
        let docs = Self::prefix_keys(&self.docs, &prefix)?;
        let chunks = Self::prefix_keys(&self.chunks, &prefix)?;
        let vectors = Self::prefix_keys(&self.vectors, &prefix)?;
        let sources = Self::prefix_keys(&self.sources, &prefix)?;
        let anchor = keys::anchor(conv);
        (
            &self.docs,
            &self.chunks,
            &self.vectors,
            &self.sources,
            &self.anchors,
        )
            .transaction(|(d, c, v, f, a)| {
                for k in &docs {
                    d.remove(k)?;
                }
                for k in &chunks {
                    c.remove(k)?;
                }
                for k in &vectors {
                    v.remove(k)?;
                }
                for k in &sources {
                    f.remove(k)?;
                }
                a.remove(anchor.as_slice())?;
                Ok::<_, ConflictableTransactionError<StorageError>>(())
            })
            .map_err(tx_error)?;
        Ok((docs.len() as u64, chunks.len() as u64))
    }
}

#[async_trait]
impl Conversations for SledStore {
    async fn anchor(&self, conv: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.anchors.get(keys::anchor(conv))?.map(|v| v.to_vec()))
    }

    async fn update_anchor(
        &self,
        conv: &str,
        event: Option<&str>,
        durability: Durability,
        edit: AnchorEdit<'_>,
    ) -> Result<Vec<u8>, StorageError> {
        let k = keys::anchor(conv);
        let seen_key = event.map(|id| keys::seen(conv, id));
        let written = (&self.anchors, &self.seen, &self.journal)
            .transaction(|(t, seen, journal)| {
                let current = t.get(k.as_slice())?;
                let next = edit(current.as_deref()).map_err(ConflictableTransactionError::Abort)?;
                t.insert(k.as_slice(), next.as_slice())?;
                if let Some(sk) = &seen_key {
                    seen.insert(sk.as_slice(), &now_ms().to_be_bytes()[..])?;
                    journal.remove(sk.as_slice())?;
                }
                Ok(next)
            })
            .map_err(tx_error)?;
        if durability == Durability::Flushed {
            self.flush().await?;
        }
        Ok(written)
    }

    async fn remove_anchor(&self, conv: &str) -> Result<(), StorageError> {
        self.anchors.remove(keys::anchor(conv))?;
        self.flush().await
    }

    async fn was_handled(&self, conv: &str, event: &str) -> Result<bool, StorageError> {
        Ok(self.seen.contains_key(keys::seen(conv, event))?)
    }

    async fn mark_handled(&self, conv: &str, event: &str) -> Result<(), StorageError> {
        let k = keys::seen(conv, event);
        (&self.seen, &self.journal)
            .transaction(|(seen, journal)| {
                seen.insert(k.as_slice(), &now_ms().to_be_bytes()[..])?;
                journal.remove(k.as_slice())?;
                Ok::<_, ConflictableTransactionError<StorageError>>(())
            })
            .map_err(tx_error)
    }

    async fn anchored(&self) -> Result<Vec<String>, StorageError> {
        self.anchors
            .iter()
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    async fn flush(&self) -> Result<(), StorageError> {
        self.flusher.flush(&self.db).await
    }
}

#[async_trait]
impl DocumentRows for SledStore {
    async fn records(&self, conv: &str) -> Result<Vec<DocRow>, StorageError> {
        let mut out = Vec::new();
        for item in self.docs.scan_prefix(keys::conv_prefix(conv)) {
            let (k, v) = item?;
            out.push(DocRow {
                doc: keys::split_doc(conv, &k),
                ingested_ms: ingested_ms(&v),
                record: v.to_vec(),
            });
        }
        Ok(out)
    }

    async fn all_records(&self) -> Result<Vec<(String, DocRow)>, StorageError> {
        let mut out = Vec::new();
        for item in self.docs.iter() {
            let (k, v) = item?;
            let conv = String::from_utf8_lossy(keys::conversation_of(&k)).into_owned();
            out.push((
                conv.clone(),
                DocRow {
                    doc: keys::split_doc(&conv, &k),
                    ingested_ms: ingested_ms(&v),
                    record: v.to_vec(),
                },
            ));
        }
        Ok(out)
    }

    async fn put_record(&self, conv: &str, doc: &DocRow) -> Result<(), StorageError> {
        self.docs
            .insert(keys::doc(conv, &doc.doc), doc.record.as_slice())?;
        Ok(())
    }

    async fn commit(
        &self,
        conv: &str,
        doc: &DocRow,
        chunks: &[ChunkRow],
    ) -> Result<(), StorageError> {
        let rows: Vec<(Vec<u8>, &ChunkRow)> = chunks
            .iter()
            .map(|c| (keys::chunk(conv, &c.doc, c.page, c.position), c))
            .collect();
        let dk = keys::doc(conv, &doc.doc);
        (&self.docs, &self.chunks, &self.vectors)
            .transaction(|(d, c, v)| {
                for (k, row) in &rows {
                    c.insert(k.as_slice(), row.record.as_slice())?;
                    v.insert(k.as_slice(), row.vector.as_slice())?;
                }
                d.insert(dk.as_slice(), doc.record.as_slice())?;
                Ok::<_, ConflictableTransactionError<StorageError>>(())
            })
            .map_err(tx_error)
    }

    async fn clear_page(&self, conv: &str, doc: &DocRow, page: u32) -> Result<(), StorageError> {
        let found = Self::prefix_keys(&self.chunks, &keys::page(conv, &doc.doc, page))?;
        let dk = keys::doc(conv, &doc.doc);
        (&self.docs, &self.chunks, &self.vectors)
            .transaction(|(d, c, v)| {
                for k in &found {
                    c.remove(k)?;
                    v.remove(k)?;
                }
                d.insert(dk.as_slice(), doc.record.as_slice())?;
                Ok::<_, ConflictableTransactionError<StorageError>>(())
            })
            .map_err(tx_error)
    }

    async fn remove_document(&self, conv: &str, doc: &str) -> Result<(), StorageError> {
        let dk = keys::doc(conv, doc);
        let prefix = keys::doc_chunks(conv, doc);
        let chunks = Self::prefix_keys(&self.chunks, &prefix)?;
        let vectors = Self::prefix_keys(&self.vectors, &prefix)?;
        (&self.docs, &self.chunks, &self.vectors, &self.sources)
            .transaction(|(d, c, v, f)| {
                d.remove(dk.as_slice())?;
                f.remove(dk.as_slice())?;
                for k in &chunks {
                    c.remove(k)?;
                }
                for k in &vectors {
                    v.remove(k)?;
                }
                Ok::<_, ConflictableTransactionError<StorageError>>(())
            })
            .map_err(tx_error)
    }

    async fn put_source(&self, conv: &str, doc: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.sources.insert(keys::doc(conv, doc), bytes)?;
        Ok(())
    }

    async fn source(&self, conv: &str, doc: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.sources.get(keys::doc(conv, doc))?.map(|v| v.to_vec()))
    }

    async fn remove_source(&self, conv: &str, doc: &str) -> Result<(), StorageError> {
        self.sources.remove(keys::doc(conv, doc))?;
        Ok(())
    }

    async fn prune_sources(&self) -> Result<usize, StorageError> {
        let mut removed = 0;
        for key in self.sources.iter().keys() {
            let key = key?;
            if !self.docs.contains_key(&key)? {
                self.sources.remove(&key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn chunk(
        &self,
        conv: &str,
        doc: &str,
        page: u32,
        position: u32,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .chunks
            .get(keys::chunk(conv, doc, page, position))?
            .map(|v| v.to_vec()))
    }

    async fn document_chunks(&self, conv: &str, doc: &str) -> Result<Vec<ChunkRow>, StorageError> {
        let mut out = Vec::new();
        for item in self.chunks.scan_prefix(keys::doc_chunks(conv, doc)) {
            let (k, v) = item?;
            let Some((doc, page, position)) = keys::split_chunk(conv, &k) else {
                continue;
            };
            let vector = self.vectors.get(&k)?.map_or_else(Vec::new, |v| v.to_vec());
            out.push(ChunkRow {
                doc,
                page,
                position,
                record: v.to_vec(),
                vector,
            });
        }
        Ok(out)
    }

    async fn scan_chunks(
        &self,
        conv: &str,
        each: &mut (dyn FnMut(ChunkRow) + Send),
    ) -> Result<(), StorageError> {
        for item in self.vectors.scan_prefix(keys::conv_prefix(conv)) {
            let (k, v) = item?;
            let Some(record) = self.chunks.get(&k)? else {
                continue;
            };
            let Some((doc, page, position)) = keys::split_chunk(conv, &k) else {
                continue;
            };
            each(ChunkRow {
                doc,
                page,
                position,
                record: record.to_vec(),
                vector: v.to_vec(),
            });
        }
        Ok(())
    }

    async fn counts(&self, conv: &str) -> Result<(u64, u64, u64), StorageError> {
        let prefix = keys::conv_prefix(conv);
        let count = |t: &sled::Tree| t.scan_prefix(&prefix).count() as u64;
        Ok((count(&self.docs), count(&self.chunks), count(&self.vectors)))
    }
}

#[async_trait]
impl Journal for SledStore {
    async fn claim(
        &self,
        conv: &str,
        event: &str,
        owner: &str,
        payload: &[u8],
    ) -> Result<Claim, StorageError> {
        let k = keys::seen(conv, event);
        let value = journal_value(&JournalValue {
            at_ms: now_ms(),
            owner: owner.to_string(),
            reply: &[],
            payload,
        });
        let claim = (&self.seen, &self.journal)
            .transaction(|(seen, journal)| {
                if seen.get(k.as_slice())?.is_some() || journal.get(k.as_slice())?.is_some() {
                    return Ok(Claim::Taken);
                }
                journal.insert(k.as_slice(), value.as_slice())?;
                Ok::<_, ConflictableTransactionError<StorageError>>(Claim::New)
            })
            .map_err(tx_error)?;
        if claim == Claim::New {
            // It precedes the platform's ack: on disk before the event counts as received.
            self.flush().await?;
        }
        Ok(claim)
    }

    async fn pending(&self) -> Result<Vec<Journaled>, StorageError> {
        let mut out = Vec::new();
        for item in self.journal.iter() {
            let (k, v) = item?;
            let conv = keys::conversation_of(&k);
            let event = k.get(conv.len() + 1..).unwrap_or_default();
            let Some(e) = split_journal_value(&v) else {
                tracing::warn!("an unreadable journal entry was left out");
                continue;
            };
            out.push(Journaled {
                conv: String::from_utf8_lossy(conv).into_owned(),
                event: String::from_utf8_lossy(event).into_owned(),
                owner: e.owner,
                payload: e.payload.to_vec(),
                reply: e.reply.to_vec(),
                at_ms: e.at_ms,
            });
        }
        out.sort_by_key(|j| j.at_ms);
        Ok(out)
    }

    async fn adopt(
        &self,
        conv: &str,
        event: &str,
        from: &str,
        to: &str,
    ) -> Result<bool, StorageError> {
        let k = keys::seen(conv, event);
        self.journal
            .transaction(|j| {
                let Some(v) = j.get(k.as_slice())? else {
                    return Ok(false);
                };
                match split_journal_value(&v) {
                    Some(mut e) if e.owner == from => {
                        e.owner = to.to_string();
                        j.insert(k.as_slice(), journal_value(&e))?;
                        Ok::<_, ConflictableTransactionError<StorageError>>(true)
                    }
                    _ => Ok(false),
                }
            })
            .map_err(tx_error)
    }

    async fn note_reply(&self, conv: &str, event: &str, reply: &[u8]) -> Result<(), StorageError> {
        let k = keys::seen(conv, event);
        self.journal
            .transaction(|j| {
                let Some(v) = j.get(k.as_slice())? else {
                    return Ok(());
                };
                if let Some(mut e) = split_journal_value(&v) {
                    e.reply = reply;
                    j.insert(k.as_slice(), journal_value(&e))?;
                }
                Ok::<_, ConflictableTransactionError<StorageError>>(())
            })
            .map_err(tx_error)?;
        // Lazily durable: a reply lost in a crash only leaves its message behind.
        Ok(())
    }
}

/// A journal entry's value: when it was claimed (Unix ms, big endian), its owner's length (two
/// bytes, big endian) and owner, the noted reply's length (four bytes, big endian) and reply,
/// then the event.
fn journal_value(e: &JournalValue<'_>) -> Vec<u8> {
    let owner = &e.owner.as_bytes()[..e.owner.len().min(u16::MAX as usize)];
    let reply = &e.reply[..e.reply.len().min(u32::MAX as usize)];
    let mut v = Vec::with_capacity(14 + owner.len() + reply.len() + e.payload.len());
    v.extend_from_slice(&e.at_ms.to_be_bytes());
    v.extend_from_slice(&(owner.len() as u16).to_be_bytes());
    v.extend_from_slice(owner);
    v.extend_from_slice(&(reply.len() as u32).to_be_bytes());
    v.extend_from_slice(reply);
    v.extend_from_slice(e.payload);
    v
}

/// A journal entry's value, read.
struct JournalValue<'a> {
    at_ms: u64,
    owner: String,
    reply: &'a [u8],
    payload: &'a [u8],
}

fn split_journal_value(v: &[u8]) -> Option<JournalValue<'_>> {
    let at_ms = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let len = u16::from_be_bytes(v.get(8..10)?.try_into().ok()?) as usize;
    let owner = String::from_utf8_lossy(v.get(10..10 + len)?).into_owned();
    let rest = v.get(10 + len..)?;
    let reply_len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    Some(JournalValue {
        at_ms,
        owner,
        reply: rest.get(4..4 + reply_len)?,
        payload: rest.get(4 + reply_len..)?,
    })
}

/// A lease's value: its expiry (Unix ms, big endian), then its holder.
fn lease_value(expires_ms: u64, holder: &str) -> Vec<u8> {
    let mut v = expires_ms.to_be_bytes().to_vec();
    v.extend_from_slice(holder.as_bytes());
    v
}

/// The holder of a lease value, if it has not expired at `now`.
fn live_holder(value: &[u8], now: u64) -> Option<String> {
    let expires = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    (expires > now).then(|| String::from_utf8_lossy(&value[8..]).into_owned())
}

#[async_trait]
impl Leases for SledStore {
    async fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StorageError> {
        let now = now_ms();
        let value = lease_value(now + ttl.as_millis() as u64, holder);
        self.leases
            .transaction(|t| {
                let current = t.get(name.as_bytes())?;
                match current.as_deref().and_then(|v| live_holder(v, now)) {
                    Some(other) if other != holder => Ok(false),
                    _ => {
                        t.insert(name.as_bytes(), value.as_slice())?;
                        Ok::<_, ConflictableTransactionError<StorageError>>(true)
                    }
                }
            })
            .map_err(tx_error)
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), StorageError> {
        let now = now_ms();
        self.leases
            .transaction(|t| {
                let current = t.get(name.as_bytes())?;
                if current
                    .as_deref()
                    .and_then(|v| live_holder(v, now))
                    .as_deref()
                    == Some(holder)
                {
                    t.remove(name.as_bytes())?;
                }
                Ok::<_, ConflictableTransactionError<StorageError>>(())
            })
            .map_err(tx_error)
    }

    async fn holder(&self, name: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .leases
            .get(name.as_bytes())?
            .and_then(|v| live_holder(&v, now_ms())))
    }

    async fn count(&self, prefix: &str) -> Result<usize, StorageError> {
        let now = now_ms();
        let mut live = 0;
        for item in self.leases.scan_prefix(prefix.as_bytes()) {
            let (_, v) = item?;
            if live_holder(&v, now).is_some() {
                live += 1;
            }
        }
        Ok(live)
    }
}

#[async_trait]
impl Maintenance for SledStore {
    async fn sizes(&self) -> Result<Vec<ConvSize>, StorageError> {
        let mut all: BTreeMap<Vec<u8>, ConvSize> = BTreeMap::new();
        for (name, tree) in self.data_trees()? {
            for item in tree.iter() {
                let (k, v) = item?;
                let conv = keys::conversation_of(&k).to_vec();
                tally(all.entry(conv).or_default(), &name, &k, &v);
            }
        }
        Ok(all
            .into_iter()
            .map(|(conv, mut size)| {
                size.conv = String::from_utf8_lossy(&conv).into_owned();
                size
            })
            .collect())
    }

    async fn size_of(&self, conv: &str) -> Result<ConvSize, StorageError> {
        let mut size = ConvSize {
            conv: conv.to_string(),
            ..ConvSize::default()
        };
        let prefix = keys::conv_prefix(conv);
        for (name, tree) in self.data_trees()? {
            if let Some(v) = tree.get(conv.as_bytes())? {
                tally(&mut size, &name, conv.as_bytes(), &v);
            }
            for item in tree.scan_prefix(&prefix) {
                let (k, v) = item?;
                tally(&mut size, &name, &k, &v);
            }
        }
        Ok(size)
    }

    async fn clear(&self, conv: &str) -> Result<(u64, u64), StorageError> {
        let removed = self.clear_records(conv)?;
        self.flush().await?;
        Ok(removed)
    }

    async fn erase(&self, conv: &str) -> Result<ConvSize, StorageError> {
        let size = self.size_of(conv).await?;
        self.clear_records(conv)?;
        // Then every tree the database has, whatever its name, is swept of records left under
        // the conversation (its de-duplication marks, and anything a later version adds).
        let prefix = keys::conv_prefix(conv);
        for (_, tree) in self.data_trees()? {
            let mut batch = sled::Batch::default();
            let mut any = false;
            if tree.contains_key(conv.as_bytes())? {
                batch.remove(conv.as_bytes());
                any = true;
            }
            for k in tree.scan_prefix(&prefix).keys() {
                batch.remove(k?);
                any = true;
            }
            if any {
                tree.apply_batch(batch)?;
            }
        }
        self.flush().await?;
        Ok(size)
    }

    async fn reclaim_later(&self) -> Result<(), StorageError> {
        swap::mark_compaction(&self.dir).map_err(|e| StorageError::file(&self.dir, e))
    }

    async fn backup(&self, file: &Path) -> Result<backup::BackupSummary, StorageError> {
        self.flush().await?;
        backup::write(&self.db, file)
    }

    async fn ready(&self) -> Result<(), StorageError> {
        self.db.get(b"readyz")?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("sled in {}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_open_reports_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path()).unwrap();
        let err = SledStore::open(dir.path())
            .err()
            .expect("second open must fail");
        assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_commits_share_flushes_and_all_reach_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SledStore::open(dir.path()).unwrap());
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let body = format!("{{\"n\":{i}}}").into_bytes();
                    let edit = |_: Option<&[u8]>| Ok(body.clone());
                    store
                        .update_anchor(&format!("console:c{i}"), None, Durability::Flushed, &edit)
                        .await
                        .unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // Every ticket was covered, without error.
        let (covered, error) = store.flusher.covered();
        assert_eq!(covered, 40);
        assert!(error.is_none());
        drop(store);
        let store = loop {
            match SledStore::open(dir.path()) {
                Ok(s) => break s,
                Err(StorageError::Locked { .. }) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) => panic!("{e}"),
            }
        };
        for i in 0..40 {
            let got = store.anchor(&format!("console:c{i}")).await.unwrap();
            assert_eq!(got, Some(format!("{{\"n\":{i}}}").into_bytes()));
        }
    }
}
