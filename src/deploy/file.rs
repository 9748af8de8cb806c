//! The deployed file on disk: read it, keep a backup, replace it atomically with the owner and
//! mode of the file it replaces, and show what would change.
//!
//! Atomic means: a temp file in the same directory, written and fsynced, given the old file's
//! mode and owner, then renamed over the file, then the directory fsynced. A reader (systemd, the
//! user's restart script) sees the old file or the new one, never a mix, whenever the writer is
//! killed. A killed writer may leave its temp file behind; the next write removes it.

use std::fs::{File, Metadata, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a new file when there was none to copy from.
const NEW_FILE_MODE: u32 = 0o644;
/// What a temp file's name contains, so stale ones are recognised.
const TEMP_MARK: &str = ".infertune-tmp-";

/// Where the previous version of `path` is kept: `<path>.infertune-backup`, beside it.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".infertune-backup");
    path.with_file_name(name)
}

/// The file's bytes and metadata, or `None` when it does not exist.
pub fn read(path: &Path) -> std::io::Result<Option<(Vec<u8>, Metadata)>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some((bytes, std::fs::metadata(path)?))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replace `path` with `bytes` atomically. The new file gets the mode and owner of `like` (the
/// file it replaces), else 0644 and the caller's owner. Temp files a killed writer left beside
/// `path` are removed first.
pub fn write_atomic(path: &Path, bytes: &[u8], like: Option<&Metadata>) -> std::io::Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(dir)?;
    remove_stale_temps(path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}{TEMP_MARK}{}", std::process::id()));
    let result = write_temp(&tmp, bytes, like).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    // The rename is durable only once the directory is.
    File::open(dir)?.sync_all()
}

fn write_temp(tmp: &Path, bytes: &[u8], like: Option<&Metadata>) -> std::io::Result<()> {
    let mode = like.map_or(NEW_FILE_MODE, |m| m.mode() & 0o7777);
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp)?;
    if let Some(m) = like
        && (m.uid() != f.metadata()?.uid() || m.gid() != f.metadata()?.gid())
    {
        // Needs the privilege to give the file away (root, for a file root owns); else an error
        // rather than a deployed file that the service's user may no longer read.
        std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
    }
    // The mode is set after the owner: chown clears set-id bits.
    f.set_permissions(Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Remove temp files a killed writer of `path` left in its directory.
fn remove_stale_temps(path: &Path) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let prefix = format!(".{name}{TEMP_MARK}");
    for entry in std::fs::read_dir(parent(path))?.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Keep the file as found before it is replaced. Written only when the file differs from what
/// is about to be deployed: a rerun after a killed `apply` finds its own new file in place and
/// must keep the backup of the file before it.
pub fn save_backup(path: &Path, found: &(Vec<u8>, Metadata), new: &[u8]) -> std::io::Result<bool> {
    let backup = backup_path(path);
    if found.0 == new && backup.exists() {
        return Ok(false);
    }
    write_atomic(&backup, &found.0, Some(&found.1))?;
    Ok(true)
}

/// A line diff of `old` and `new` (`-` removed, `+` added, two spaces for unchanged lines), with
/// `---`/`+++` lines naming the file.
pub fn diff(path: &Path, old: Option<&str>, new: &str) -> String {
    let old_text = old.unwrap_or("");
    let a: Vec<&str> = old_text.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let shown = path.display();
    let mut out = match old {
        Some(_) => format!("--- {shown}\n+++ {shown} (new)\n"),
        None => format!("--- {shown} (does not exist)\n+++ {shown} (new)\n"),
    };
    for op in similar::capture_diff_slices(similar::Algorithm::Myers, &a, &b) {
        for change in op.iter_changes(&a, &b) {
            let mark = match change.tag() {
                similar::ChangeTag::Delete => "-",
                similar::ChangeTag::Insert => "+",
                similar::ChangeTag::Equal => " ",
            };
            out.push_str(&format!("{mark} {}\n", change.value()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_keeps_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("llama.env");
        std::fs::write(&p, "A=1\n").unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o640)).unwrap();
        let (bytes, meta) = read(&p).unwrap().unwrap();
        assert!(save_backup(&p, &(bytes.clone(), meta.clone()), b"A=2\n").unwrap());
        write_atomic(&p, b"A=2\n", Some(&meta)).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "A=2\n");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
        let backup = backup_path(&p);
        assert_eq!(backup.file_name().unwrap(), "llama.env.infertune-backup");
        assert_eq!(std::fs::read(&backup).unwrap(), bytes);
        assert_eq!(std::fs::metadata(&backup).unwrap().mode() & 0o7777, 0o640);
        let names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_rerun_keeps_the_backup_of_the_file_before() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.env");
        std::fs::write(&p, "OLD=1\n").unwrap();
        let found = read(&p).unwrap().unwrap();
        save_backup(&p, &found, b"NEW=1\n").unwrap();
        write_atomic(&p, b"NEW=1\n", Some(&found.1)).unwrap();
        // Killed here; the rerun finds its own new file in place.
        let found = read(&p).unwrap().unwrap();
        assert!(!save_backup(&p, &found, b"NEW=1\n").unwrap());
        assert_eq!(std::fs::read_to_string(backup_path(&p)).unwrap(), "OLD=1\n");
    }

    #[test]
    fn stale_temps_are_removed_and_new_files_get_0644() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.conf");
        let stale = dir.path().join(".d.conf.infertune-tmp-99999");
        std::fs::write(&stale, "half").unwrap();
        write_atomic(&p, b"[Service]\n", None).unwrap();
        assert!(!stale.exists());
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o644);
    }

    #[test]
    fn diff_marks_changed_lines() {
        let d = diff(Path::new("/e/l.env"), Some("A=1\nB=2\n"), "A=1\nB=3\n");
        assert_eq!(d, "--- /e/l.env\n+++ /e/l.env (new)\n  A=1\n- B=2\n+ B=3\n");
        let d = diff(Path::new("n.env"), None, "A=1\n");
        assert_eq!(d, "--- n.env (does not exist)\n+++ n.env (new)\n+ A=1\n");
    }
}
