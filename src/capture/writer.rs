//! The trace files: one JSON line per finished request, written with one `write` call each (no
//! user-space buffer, so a killed proxy loses only the requests still in flight), mode 0600,
//! rotated by size.
//!
//! Rotation numbers files in the order they were written, never renaming one: `trace.jsonl`,
//! then `trace.1.jsonl`, `trace.2.jsonl`, ... Timestamps run on across files, so reading them
//! in that order gives the whole capture.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Appends lines to the current file and moves to the next one past the size limit.
#[derive(Debug)]
pub struct TraceWriter {
    base: PathBuf,
    index: u32,
    file: File,
    /// Bytes in the current file.
    written_bytes: u64,
    /// Rotate before a line would take the file past this; `None`: never.
    rotate_bytes: Option<u64>,
    /// Lines written, all files.
    lines: u64,
}

impl TraceWriter {
    /// Create `base` (which must not exist, nor its first rotation: a second capture into the
    /// same name would restart the timestamps mid-file).
    pub fn create(base: &Path, rotate_bytes: Option<u64>) -> anyhow::Result<TraceWriter> {
        let next = rotated_path(base, 1);
        if next.exists() {
            bail!("'{}' exists (from an earlier capture); choose another output or move it", next.display())
        }
        let file = create_private(base)?;
        Ok(TraceWriter { base: base.to_path_buf(), index: 0, file, written_bytes: 0, rotate_bytes, lines: 0 })
    }

    /// Write one line (without its newline), rotating first when it would not fit.
    pub fn append(&mut self, line: &[u8]) -> anyhow::Result<()> {
        let len = line.len() as u64 + 1;
        if let Some(limit) = self.rotate_bytes
            && self.written_bytes > 0
            && self.written_bytes + len > limit
        {
            self.index += 1;
            self.file = create_private(&rotated_path(&self.base, self.index))?;
            self.written_bytes = 0;
        }
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        self.file.write_all(&buf).with_context(|| format!("writing '{}'", self.current().display()))?;
        self.written_bytes += len;
        self.lines += 1;
        Ok(())
    }

    /// The file being written.
    pub fn current(&self) -> PathBuf {
        rotated_path(&self.base, self.index)
    }

    /// Lines written so far, over all files.
    pub fn lines(&self) -> u64 {
        self.lines
    }
}

/// `trace.jsonl` for 0, `trace.N.jsonl` for N (the number goes before the last extension).
pub fn rotated_path(base: &Path, index: u32) -> PathBuf {
    if index == 0 {
        return base.to_path_buf();
    }
    let stem = base.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match base.extension() {
        Some(ext) => format!("{stem}.{index}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{index}"),
    };
    base.with_file_name(name)
}

fn create_private(path: &Path) -> anyhow::Result<File> {
    std::fs::OpenOptions::new().append(true).create_new(true).mode(0o600).open(path).with_context(|| {
        if path.exists() {
            format!("'{}' exists; choose another output or move it", path.display())
        } else {
            format!("creating '{}'", path.display())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn rotated_names_put_the_number_before_the_extension() {
        assert_eq!(rotated_path(Path::new("/t/trace.jsonl"), 0), Path::new("/t/trace.jsonl"));
        assert_eq!(rotated_path(Path::new("/t/trace.jsonl"), 2), Path::new("/t/trace.2.jsonl"));
        assert_eq!(rotated_path(Path::new("trace"), 1), Path::new("trace.1"));
    }

    #[test]
    fn rotates_by_size_and_keeps_files_private() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("trace.jsonl");
        let mut w = TraceWriter::create(&base, Some(25)).unwrap();
        for line in ["0123456789", "abcdefghij", "klmnopqrst", "x"] {
            w.append(line.as_bytes()).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&base).unwrap(), "0123456789\nabcdefghij\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("trace.1.jsonl")).unwrap(), "klmnopqrst\nx\n");
        assert_eq!(w.lines(), 4);
        for f in ["trace.jsonl", "trace.1.jsonl"] {
            let mode = std::fs::metadata(dir.path().join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        drop(w);
        let err = format!("{:#}", TraceWriter::create(&base, None).unwrap_err());
        assert!(err.contains("exists"), "{err}");
    }
}
