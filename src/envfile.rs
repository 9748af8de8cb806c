//! Environment files as operators deploy them: `KEY=value` lines (an `EnvironmentFile=`,
//! shell-quoted where needed), systemd drop-ins, and atomic replacement of a file. Shared by the
//! exports and by service mode, which rewrites the user's file between trials.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// `KEY=value` lines (an `EnvironmentFile=`), quoted for POSIX shells where needed.
pub fn env_lines(env: &BTreeMap<String, String>) -> String {
    env.iter().map(|(k, v)| format!("{k}={}\n", shell_quote(v))).collect()
}

/// Quote for POSIX shells and env files: bare when safe, else single quotes.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:@%+,=".contains(c));
    if safe { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

/// Write `contents` to `path` atomically: readers see the old file or the new one, never a mix.
pub fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A systemd drop-in body: `[Service]`, then `Environment="KEY=value"` per variable in name
/// order. Values must need no escaping (the Ollama adapter only admits `[A-Za-z0-9._:/,+-]`).
pub fn systemd_drop_in(env: &BTreeMap<String, String>) -> String {
    let mut out = String::from("[Service]\n");
    for (k, v) in env {
        out.push_str(&format!("Environment=\"{k}={v}\"\n"));
    }
    out
}
