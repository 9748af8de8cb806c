//! One daemon per study: an OS advisory lock (std's `File::try_lock`, flock on Linux) on a file
//! beside the database, holding the owner's PID. The kernel releases it when the process dies,
//! even by kill -9.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use std::fs::TryLockError;

use anyhow::{Context, bail};

/// Held for as long as a `tune` works on a study.
#[derive(Debug)]
pub struct StudyLock {
    _file: std::fs::File,
    pub path: PathBuf,
}

impl StudyLock {
    /// Take the lock for `study` in the database at `db`, or fail naming the holder's PID.
    pub fn acquire(db: &Path, study: &str) -> anyhow::Result<StudyLock> {
        let safe: String =
            study.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        let path = PathBuf::from(format!("{}.{safe}.lock", db.display()));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening lock file '{}'", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking '{}'", path.display()));
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                bail!(
                    "study '{study}' is already being tuned by process {} (lock '{}')",
                    holder.trim().parse::<u32>().map(|p| p.to_string()).unwrap_or_else(|_| "unknown".into()),
                    path.display()
                );
            }
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(StudyLock { _file: file, path })
    }
}

/// Whether process `pid` exists on this machine (a run whose daemon is gone is not active).
pub fn is_alive(pid: i64) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let first = StudyLock::acquire(&db, "s").unwrap();
        // These locks (flock on Linux) belong to the open file description, so a second open conflicts even
        // within one process.
        let err = StudyLock::acquire(&db, "s").unwrap_err().to_string();
        assert!(err.contains(&format!("process {}", std::process::id())), "{err}");
        assert!(StudyLock::acquire(&db, "other").is_ok());
        drop(first);
        assert!(StudyLock::acquire(&db, "s").is_ok());
    }
}
