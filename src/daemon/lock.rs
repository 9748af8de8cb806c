//! One daemon per study, one apply per deployed file: an OS advisory lock (std's
//! `File::try_lock`, flock on Linux) on a file beside the database (or the deployed file),
//! holding the owner's PID. The kernel releases it when the process dies, even by kill -9.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use std::fs::TryLockError;

use anyhow::{Context, bail};

/// An OS advisory lock on a file holding the owner's PID: for as long as a `tune` works on a
/// study ([`PidLock::study`]) or an `apply` deploys to a file ([`PidLock::apply`]).
#[derive(Debug)]
pub struct PidLock {
    _file: std::fs::File,
    pub path: PathBuf,
}

impl PidLock {
    /// Take the lock for `study` in the database at `db`, or fail naming the holder's PID.
    pub fn study(db: &Path, study: &str) -> anyhow::Result<PidLock> {
        let safe: String =
            study.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        let path = PathBuf::from(format!("{}.{safe}.lock", db.display()));
        PidLock::take(path, |pid| format!("study '{study}' is already being tuned by process {pid}"))
    }

    /// Take the lock of an `apply` to `target` (`<target>.infertune-lock`, beside it), or fail
    /// naming the holder's PID: two applies to one service would interleave their writes,
    /// backups, restarts and canaries.
    pub fn apply(target: &Path) -> anyhow::Result<PidLock> {
        let mut name = target.as_os_str().to_owned();
        name.push(".infertune-lock");
        PidLock::take(PathBuf::from(name), |pid| {
            format!("another apply to '{}' is running (process {pid})", target.display())
        })
    }

    /// Lock `path` (created if missing) and write this process's PID into it; when another
    /// holds it, fail with `busy(its pid)` and the lock's path.
    fn take(path: PathBuf, busy: impl FnOnce(&str) -> String) -> anyhow::Result<PidLock> {
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
                let pid = holder.trim().parse::<u32>().map(|p| p.to_string()).unwrap_or_else(|_| "unknown".into());
                bail!("{} (lock '{}')", busy(&pid), path.display());
            }
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(PidLock { _file: file, path })
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
        let first = PidLock::study(&db, "s").unwrap();
        // These locks (flock on Linux) belong to the open file description, so a second open conflicts even
        // within one process.
        let err = PidLock::study(&db, "s").unwrap_err().to_string();
        assert!(err.contains(&format!("process {}", std::process::id())), "{err}");
        assert!(PidLock::study(&db, "other").is_ok());
        drop(first);
        assert!(PidLock::study(&db, "s").is_ok());
    }

    #[test]
    fn a_second_apply_to_one_file_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let env = dir.path().join("llama.env");
        let first = PidLock::apply(&env).unwrap();
        assert_eq!(first.path, dir.path().join("llama.env.infertune-lock"));
        let err = PidLock::apply(&env).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "another apply to '{}' is running (process {}",
                env.display(),
                std::process::id()
            )),
            "{err}"
        );
        assert!(PidLock::apply(&dir.path().join("other.env")).is_ok());
        drop(first);
        assert!(PidLock::apply(&env).is_ok());
    }
}
