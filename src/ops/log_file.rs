//! The log file of the interactive console: `<data_dir>/logs/anchorbot.log`, appended across
//! sessions and bounded. Past [`MAX_BYTES`] it becomes `anchorbot.log.1` (replacing the one
//! before) and a new file starts, so the two never hold more than twice the cap.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file's name in its directory.
pub const FILE_NAME: &str = "anchorbot.log";

/// Size past which the file is rotated.
pub const MAX_BYTES: u64 = 8 * 1024 * 1024;

/// An open log file that rotates itself.
#[derive(Debug)]
pub struct LogFile {
    /// Where it is.
    path: PathBuf,
    /// The open file, appended to.
    file: File,
    /// Its length so far.
    len: u64,
    /// Size past which it rotates.
    max: u64,
}

impl LogFile {
    /// Opens (or creates) `dir/anchorbot.log`, creating `dir` as needed.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        Self::open_capped(dir, MAX_BYTES)
    }

    /// Same, rotating past `max` bytes.
    pub fn open_capped(dir: &Path, max: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let file = append_to(&path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            path,
            file,
            len,
            max,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The previous file, once the current one has been rotated.
    pub fn previous_path(&self) -> PathBuf {
        self.path.with_extension("log.1")
    }

    /// Appends one whole event, rotating first when it would take the file past the cap (an
    /// event is never split across the two files).
    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.len > 0 && self.len + bytes.len() as u64 > self.max {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        std::fs::rename(&self.path, self.previous_path())?;
        self.file = append_to(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

fn append_to(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_across_opens_and_rotates_past_the_cap() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        let mut log = LogFile::open_capped(&dir, 100).unwrap();
        log.append(&[b'a'; 60]).unwrap();
        drop(log);
        // A second session appends to the same file.
        let mut log = LogFile::open_capped(&dir, 100).unwrap();
        log.append(&[b'b'; 30]).unwrap();
        assert_eq!(std::fs::read(log.path()).unwrap().len(), 90);
        // The next event would pass the cap: the file moves aside whole and a new one starts.
        log.append(&[b'c'; 30]).unwrap();
        let previous = std::fs::read(log.previous_path()).unwrap();
        assert_eq!(previous.len(), 90);
        assert_eq!(std::fs::read(log.path()).unwrap(), [b'c'; 30]);
        // Rotating again replaces the previous file: never more than two files.
        log.append(&[b'd'; 80]).unwrap();
        assert_eq!(std::fs::read(log.previous_path()).unwrap(), [b'c'; 30]);
        assert_eq!(std::fs::read(log.path()).unwrap(), [b'd'; 80]);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    }
}
