//! Crash-safe replacement of the whole store directory, used by `forget` (compaction) and
//! `restore`.
//!
//! sled 0.34 keeps overwritten and removed values in its log until it rewrites the segments,
//! so erasing a conversation from the trees does not erase its bytes from disk. Compaction
//! copies the live records into a fresh database in a sibling directory and swaps it in.
//!
//! The swap never leaves a moment without a valid store:
//! 1. the new store is written to `<dir>.anchorbot-new`, flushed, closed, fsynced, and then
//!    marked complete with the file [`COMPLETE`];
//! 2. `<dir>` is renamed to `<dir>.anchorbot-old`;
//! 3. `<dir>.anchorbot-new` is renamed to `<dir>` (and the parent directory fsynced);
//! 4. `<dir>.anchorbot-old` is deleted.
//!
//! [`recover`] runs before every open of the store and finishes an interrupted swap: with
//! `<dir>` missing it moves a complete new store into place (a crash between steps 2 and 3), or
//! else the old one back. [`clean_after_open`] runs once the store is open (so its lock is held
//! and no other process is writing a new copy) and deletes what a crash left beside it: an old
//! store (step 4 interrupted) or an unfinished copy (step 1 interrupted).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::storage::StorageError;

/// Marks a new store as completely written and flushed; only then may it replace the old one.
pub const COMPLETE: &str = "ANCHORBOT-SWAP-COMPLETE";

/// `<dir>.<suffix>`, beside `dir`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "anchorbot-data".into());
    dir.with_file_name(format!("{name}.{suffix}"))
}

/// Where a replacement store is written before it is swapped in.
pub fn new_dir(dir: &Path) -> PathBuf {
    sibling(dir, "anchorbot-new")
}

/// Where the replaced store waits for deletion.
pub fn old_dir(dir: &Path) -> PathBuf {
    sibling(dir, "anchorbot-old")
}

/// The mark of a store that must be compacted when it is next opened: retention erased
/// conversations while the bot held it open, and an open store cannot replace itself.
fn pending_mark(dir: &Path) -> PathBuf {
    sibling(dir, "anchorbot-compact")
}

/// Marks the store in `dir` for compaction at its next open (durably: the mark survives a
/// crash).
pub fn mark_compaction(dir: &Path) -> io::Result<()> {
    fs::File::create(pending_mark(dir))?.sync_all()?;
    sync_dir(&parent(dir))
}

/// Whether the store in `dir` is marked for compaction.
pub fn compaction_pending(dir: &Path) -> bool {
    pending_mark(dir).exists()
}

/// Compacts the store in `dir`, whose only handle is `db`, and clears its mark. A crash
/// before the mark is cleared only means compacting once more at the next open.
pub fn compact(dir: &Path, db: sled::Db) -> Result<u64, StorageError> {
    let copied = write_new(dir, |new| Ok(copy_trees(&db, new)?))?;
    drop(db);
    swap_in(dir)?;
    let mark = pending_mark(dir);
    fs::remove_file(&mark).map_err(|e| StorageError::file(&mark, e))?;
    sync_dir(&parent(dir)).map_err(|e| StorageError::file(dir, e))?;
    Ok(copied)
}

/// Whether the new store beside `dir` was completely written.
fn is_complete(new: &Path) -> bool {
    new.join(COMPLETE).exists()
}

/// Makes a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    // Directories can be opened and fsynced on Unix; elsewhere this is best effort.
    match fs::File::open(dir) {
        Ok(f) => f.sync_all().or(Ok(())),
        Err(_) => Ok(()),
    }
}

fn parent(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn remove_all(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Finishes a swap that a crash interrupted while `dir` was missing. Runs before the store is
/// opened; does nothing when `dir` exists.
pub fn recover(dir: &Path) -> io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let (new, old) = (new_dir(dir), old_dir(dir));
    if new.exists() && is_complete(&new) {
        tracing::warn!(dir = %dir.display(), "finishing an interrupted store swap: the new store goes into place");
        fs::rename(&new, dir)?;
        sync_dir(&parent(dir))?;
        let _ = fs::remove_file(dir.join(COMPLETE));
        remove_all(&old)?;
    } else if old.exists() {
        tracing::warn!(dir = %dir.display(), "an interrupted store swap left the previous store aside; putting it back");
        fs::rename(&old, dir)?;
        sync_dir(&parent(dir))?;
        remove_all(&new)?;
    }
    Ok(())
}

/// Deletes what an interrupted swap left beside `dir`. Call it with the store open (its lock
/// held), so no other process is writing a new copy.
pub fn clean_after_open(dir: &Path) -> io::Result<()> {
    let (new, old) = (new_dir(dir), old_dir(dir));
    if old.exists() {
        tracing::info!(dir = %old.display(), "deleting the store a finished swap left aside");
        remove_all(&old)?;
    }
    if new.exists() {
        if is_complete(&new) {
            tracing::warn!(dir = %new.display(), "a store swap was interrupted before it began; the current store is kept (run `anchorbot forget` again to compact it)");
        }
        remove_all(&new)?;
    }
    let _ = fs::remove_file(dir.join(COMPLETE));
    Ok(())
}

/// Records copied into the new store per batch.
const BATCH: usize = 4096;

/// Copies every tree of `from` into `to`, record by record.
pub fn copy_trees(from: &sled::Db, to: &sled::Db) -> sled::Result<u64> {
    let mut copied = 0u64;
    for name in from.tree_names() {
        let src = from.open_tree(&name)?;
        let dst = to.open_tree(&name)?;
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        for item in src.iter() {
            let (k, v) = item?;
            batch.insert(k, v);
            pending += 1;
            copied += 1;
            if pending == BATCH {
                dst.apply_batch(std::mem::take(&mut batch))?;
                pending = 0;
            }
        }
        dst.apply_batch(batch)?;
    }
    Ok(copied)
}

/// Writes a new store beside `dir` with `fill`, flushes and closes it, and marks it complete.
/// Any earlier unfinished copy is discarded first.
pub fn write_new<T>(
    dir: &Path,
    fill: impl FnOnce(&sled::Db) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    let new = new_dir(dir);
    remove_all(&new).map_err(|e| StorageError::file(&new, e))?;
    let db = super::sled_config(&new).open()?;
    let out = fill(&db)?;
    db.flush()?;
    drop(db);
    let marker = new.join(COMPLETE);
    fs::File::create(&marker)
        .and_then(|f| f.sync_all())
        .map_err(|e| StorageError::file(&marker, e))?;
    sync_dir(&new).map_err(|e| StorageError::file(&new, e))?;
    sync_dir(&parent(dir)).map_err(|e| StorageError::file(dir, e))?;
    Ok(out)
}

/// Puts the complete new store in place of `dir` (see the module doc). Every handle on the
/// store in `dir` must be dropped first.
pub fn swap_in(dir: &Path) -> Result<(), StorageError> {
    let (new, old) = (new_dir(dir), old_dir(dir));
    let io = |p: &Path, e| StorageError::file(p, e);
    remove_all(&old).map_err(|e| io(&old, e))?;
    if dir.exists() {
        fs::rename(dir, &old).map_err(|e| io(dir, e))?;
        sync_dir(&parent(dir)).map_err(|e| io(dir, e))?;
    }
    fs::rename(&new, dir).map_err(|e| io(&new, e))?;
    sync_dir(&parent(dir)).map_err(|e| io(dir, e))?;
    let _ = fs::remove_file(dir.join(COMPLETE));
    remove_all(&old).map_err(|e| io(&old, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(dir: &Path, key: &[u8], value: &[u8]) {
        let db = crate::storage::sled::sled_config(dir).open().unwrap();
        db.open_tree("t").unwrap().insert(key, value).unwrap();
        db.flush().unwrap();
    }

    fn value(dir: &Path, key: &[u8]) -> Option<Vec<u8>> {
        let db = crate::storage::sled::sled_config(dir).open().unwrap();
        let v = db.open_tree("t").unwrap().get(key).unwrap();
        v.map(|v| v.to_vec())
    }

    #[test]
    fn a_crash_between_the_renames_finishes_with_the_new_store() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        store_with(&old_dir(&dir), b"k", b"old");
        store_with(&new_dir(&dir), b"k", b"new");
        fs::File::create(new_dir(&dir).join(COMPLETE)).unwrap();
        recover(&dir).unwrap();
        assert_eq!(value(&dir, b"k").as_deref(), Some(&b"new"[..]));
        assert!(!old_dir(&dir).exists());
        assert!(!new_dir(&dir).exists());
    }

    #[test]
    fn an_unfinished_copy_never_replaces_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        store_with(&old_dir(&dir), b"k", b"old");
        store_with(&new_dir(&dir), b"k", b"half");
        recover(&dir).unwrap();
        assert_eq!(value(&dir, b"k").as_deref(), Some(&b"old"[..]));
        assert!(!new_dir(&dir).exists());

        store_with(&new_dir(&dir), b"k", b"half");
        clean_after_open(&dir).unwrap();
        assert!(!new_dir(&dir).exists());
        assert_eq!(value(&dir, b"k").as_deref(), Some(&b"old"[..]));
    }
}
