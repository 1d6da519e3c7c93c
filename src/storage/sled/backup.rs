//! `anchorbot backup FILE` and `anchorbot restore FILE`.
//!
//! A backup is one file: a header, every record of every tree, and a SHA-256 of all of it.
//!
//! ```text
//! "ANCHORBOT-BACKUP\n"                       magic (17 bytes)
//! u32 format version (1), u32 schema version, u64 created (Unix ms)     big-endian
//! records: 0x01 u32 len, tree name          starts a tree
//!          0x02 u32 len, key, u32 len, value   a record of the current tree
//!          0x00 u64 record count            the end
//! 32 bytes: SHA-256 of everything above
//! ```
//!
//! It is written to `FILE.partial` and renamed when complete, so a failed backup never leaves
//! a truncated file under the name asked for. `restore` checks the whole file (magic, version,
//! structure, checksum) before it touches anything, writes the records into a new store beside
//! the data directory, migrates it, and swaps it in as `forget` does (see [`super::swap`]).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::swap;
use crate::storage::StorageError;

/// The file's first bytes.
pub const MAGIC: &[u8] = b"ANCHORBOT-BACKUP\n";
/// The layout version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const TREE: u8 = 1;
const RECORD: u8 = 2;
const END: u8 = 0;

/// What a backup or restore covered.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackupSummary {
    /// Trees.
    pub trees: u64,
    /// Records, across every tree.
    pub records: u64,
    /// Schema version of the store in the file.
    pub schema_version: u32,
    /// When the backup was made (Unix ms).
    pub created_ms: u64,
}

/// Writes everything through, hashing it.
struct HashWriter<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> HashWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hash.update(bytes);
        self.inner.write_all(bytes)
    }

    fn put_len(&mut self, bytes: &[u8]) -> io::Result<()> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| io::Error::other("a record over 4 GiB cannot be backed up"))?;
        self.put(&len.to_be_bytes())?;
        self.put(bytes)
    }
}

/// Writes a backup of `db` to `file`.
pub fn write(db: &sled::Db, file: &Path) -> Result<BackupSummary, StorageError> {
    let partial = partial_path(file);
    let result = write_to(db, &partial);
    match result {
        Ok(summary) => {
            std::fs::rename(&partial, file).map_err(|e| StorageError::file(file, e))?;
            Ok(summary)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn write_to(db: &sled::Db, path: &Path) -> Result<BackupSummary, StorageError> {
    let io = |e| StorageError::file(path, e);
    let f = File::create(path).map_err(io)?;
    let mut w = HashWriter {
        inner: BufWriter::new(f),
        hash: Sha256::new(),
    };
    let mut summary = BackupSummary {
        schema_version: anchorbot_migrations::stored_version(db).map_err(StorageError::from)?,
        created_ms: crate::storage::now_ms(),
        ..Default::default()
    };
    w.put(MAGIC).map_err(io)?;
    w.put(&FORMAT_VERSION.to_be_bytes()).map_err(io)?;
    w.put(&summary.schema_version.to_be_bytes()).map_err(io)?;
    w.put(&summary.created_ms.to_be_bytes()).map_err(io)?;
    let mut names = db.tree_names();
    names.sort();
    for name in names {
        let tree = db.open_tree(&name)?;
        w.put(&[TREE]).map_err(io)?;
        w.put_len(&name).map_err(io)?;
        summary.trees += 1;
        for item in tree.iter() {
            let (k, v) = item?;
            w.put(&[RECORD]).map_err(io)?;
            w.put_len(&k).map_err(io)?;
            w.put_len(&v).map_err(io)?;
            summary.records += 1;
        }
    }
    w.put(&[END]).map_err(io)?;
    w.put(&summary.records.to_be_bytes()).map_err(io)?;
    let digest = w.hash.finalize();
    w.inner.write_all(&digest).map_err(io)?;
    let f = w.inner.into_inner().map_err(|e| io(e.into_error()))?;
    f.sync_all().map_err(io)?;
    Ok(summary)
}

/// Reads a backup, checking it as it goes.
struct Reader {
    inner: BufReader<File>,
    hash: Sha256,
    /// Bytes left in the file, so a damaged length cannot ask for more.
    left: u64,
}

impl Reader {
    fn take(&mut self, n: u64) -> Result<Vec<u8>, String> {
        if n > self.left {
            return Err("it ends early (truncated or damaged)".into());
        }
        let mut buf = vec![0; n as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| format!("cannot read it: {e}"))?;
        self.left -= n;
        self.hash.update(&buf);
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("eight bytes")))
    }

    fn sized(&mut self) -> Result<Vec<u8>, String> {
        let n = self.u32()?;
        self.take(n.into())
    }
}

/// Reads the backup at `file`, giving each tree name and record to `sink`, and checks it
/// whole: a damaged file is reported only at its end, so run once without a sink before
/// writing anything.
fn read(
    file: &Path,
    mut sink: impl FnMut(&[u8], Vec<u8>, Vec<u8>) -> Result<(), StorageError>,
) -> Result<BackupSummary, StorageError> {
    let bad = |reason: String| StorageError::BadBackup {
        path: file.to_path_buf(),
        reason,
    };
    let f = File::open(file).map_err(|e| StorageError::file(file, e))?;
    let len = f.metadata().map_err(|e| StorageError::file(file, e))?.len();
    let mut r = Reader {
        inner: BufReader::new(f),
        hash: Sha256::new(),
        left: len,
    };
    let magic = r
        .take(MAGIC.len() as u64)
        .map_err(|_| bad("it is not an anchorbot backup".into()))?;
    if magic != MAGIC {
        return Err(bad("it is not an anchorbot backup".into()));
    }
    let version = r.u32().map_err(bad)?;
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "it has backup format {version}; this anchorbot reads format {FORMAT_VERSION}"
        )));
    }
    let mut summary = BackupSummary {
        schema_version: r.u32().map_err(bad)?,
        created_ms: r.u64().map_err(bad)?,
        ..Default::default()
    };
    if summary.schema_version > anchorbot_migrations::CURRENT_VERSION {
        return Err(bad(format!(
            "its store is at schema version {}, newer than this anchorbot supports ({}); upgrade anchorbot",
            summary.schema_version,
            anchorbot_migrations::CURRENT_VERSION
        )));
    }
    let mut tree: Option<Vec<u8>> = None;
    loop {
        let tag = r.take(1).map_err(bad)?[0];
        match tag {
            TREE => {
                tree = Some(r.sized().map_err(bad)?);
                summary.trees += 1;
            }
            RECORD => {
                let name = tree
                    .as_deref()
                    .ok_or_else(|| bad("a record comes before any tree".into()))?;
                let k = r.sized().map_err(bad)?;
                let v = r.sized().map_err(bad)?;
                sink(name, k, v)?;
                summary.records += 1;
            }
            END => break,
            other => return Err(bad(format!("it holds an unknown entry type {other}"))),
        }
    }
    let count = r.u64().map_err(bad)?;
    if count != summary.records {
        return Err(bad(format!(
            "it says {count} records but holds {}",
            summary.records
        )));
    }
    let digest = r.hash.clone().finalize();
    let mut stored = [0u8; 32];
    r.inner
        .read_exact(&mut stored)
        .map_err(|_| bad("its checksum is missing (truncated)".into()))?;
    if stored[..] != digest[..] {
        return Err(bad(
            "its checksum does not match (the file is damaged)".into()
        ));
    }
    if r.left != 32 {
        return Err(bad("it has bytes after its end".into()));
    }
    Ok(summary)
}

/// Checks the backup at `file` whole, without writing anything.
pub fn verify(file: &Path) -> Result<BackupSummary, StorageError> {
    read(file, |_, _, _| Ok(()))
}

/// Builds a new store beside `dir` from the (verified) backup at `file` and migrates it; the
/// caller swaps it in.
pub fn restore_into_new(dir: &Path, file: &Path) -> Result<BackupSummary, StorageError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| StorageError::file(parent, e))?;
    }
    swap::write_new(dir, |db| {
        let mut current: Option<(Vec<u8>, sled::Tree)> = None;
        let mut batch = sled::Batch::default();
        let mut pending = 0usize;
        let summary = read(file, |name, k, v| {
            if current.as_ref().map(|(n, _)| n.as_slice()) != Some(name) {
                if let Some((_, t)) = &current {
                    t.apply_batch(std::mem::take(&mut batch))?;
                    pending = 0;
                }
                current = Some((name.to_vec(), db.open_tree(name)?));
            }
            batch.insert(k, v);
            pending += 1;
            if pending == 4096 {
                if let Some((_, t)) = &current {
                    t.apply_batch(std::mem::take(&mut batch))?;
                }
                pending = 0;
            }
            Ok(())
        })?;
        if let Some((_, t)) = &current {
            t.apply_batch(batch)?;
        }
        // A backup of an older schema is brought up to date before it goes into place.
        anchorbot_migrations::migrate(db).map_err(StorageError::from)?;
        Ok(summary)
    })
}
